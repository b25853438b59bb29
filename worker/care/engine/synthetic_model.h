// Synthetic checkpoints: every tensor a config implies, filled with
// deterministic pseudo-random values, in memory or written to disk as a
// Hugging Face directory. Used by the engine tests (paths the fixtures do not
// cover) and by benchmarks at real model shapes (bench/engine care-synth).
#ifndef CARE_ENGINE_SYNTHETIC_MODEL_H_
#define CARE_ENGINE_SYNTHETIC_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/dtype.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct SyntheticOptions {
  uint64_t seed = 1;
  // Matrices: N(0, weight_std²); with fan_in_scaling, N(0, 1 / in_features)
  // instead (activations of order 1, which makes tests sensitive).
  float weight_std = 0.02f;
  bool fan_in_scaling = false;
  float embedding_std = 0.02f;
  // Norm weights 1 + N(0, norm_jitter²); biases N(0, bias_std²).
  float norm_jitter = 0.05f;
  float bias_std = 0.02f;
  // Realistic activation structure (docs/scale.md), off by default so the
  // engine tests keep their i.i.d. weights:
  // - every write into the residual stream (embedding rows, o_proj and
  //   down_proj columns, experts included) lies mostly in one model-wide
  //   subspace of `structure_rank` dimensions: W = sqrt(1-ε)·U·B + sqrt(ε)·N
  //   with U [D, rank] shared by all tensors, ε = structure_noise, so hidden
  //   dimensions are correlated and the k/v input covariance is far from
  //   identity;
  // - `outlier_channels` fixed channels (the same in every layer, as the
  //   "massive activation" channels of real LLMs) carry embedding columns
  //   scaled by outlier_embedding_scale and norm gains of outlier_norm_gain.
  bool structured = false;
  int64_t structure_rank = 64;
  float structure_noise = 0.1f;
  int64_t outlier_channels = 6;
  float outlier_embedding_scale = 8.0f;
  float outlier_norm_gain = 6.0f;
};

// The names and shapes of every tensor of a checkpoint with `config`
// (io::ExpectedTensors, plus o_proj.bias where transformers has one).
struct SyntheticTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<SyntheticTensorSpec> SyntheticTensorSpecs(
    const ModelConfig& config);

// The values of one tensor: a function of (seed, name) only, so any subset
// can be regenerated identically.
Tensor SyntheticTensor(const SyntheticTensorSpec& spec,
                       const SyntheticOptions& options);

// All tensors in memory (small configs only).
std::unique_ptr<InMemoryTensorSource> MakeSyntheticSource(
    const ModelConfig& config, const SyntheticOptions& options);

// Parses `config_json`, then writes config.json and every tensor (stored as
// `dtype`, sharded at max_shard_bytes) to `dir`, atomically.
absl::Status WriteSyntheticModel(const nlohmann::json& config_json,
                                 const std::string& dir, io::DType dtype,
                                 const SyntheticOptions& options,
                                 uint64_t max_shard_bytes = 5'000'000'000);

// The outlier channels of a structured model of width `hidden_size`
// (sorted, distinct; a function of the seed only).
std::vector<int64_t> SyntheticOutlierChannels(int64_t hidden_size,
                                              const SyntheticOptions& options);

// config.json of a real model's shape: "llama-3.2-1b", "llama-3.1-8b",
// "qwen3-4b", "qwen3-30b-a3b" (MoE: 128 experts, 8 per token),
// "deepseek-v3-tiny" (every DeepSeek-V3 path at test size),
// "deepseek-v2-lite" (DeepSeek-V2-Lite's shapes as deepseek_v3); NotFound
// lists the presets. num_layers > 0 overrides the
// layer count (benchmarks that run a few layers).
absl::StatusOr<nlohmann::json> PresetConfigJson(absl::string_view preset,
                                                int64_t num_layers = 0);

}  // namespace care::engine

#endif  // CARE_ENGINE_SYNTHETIC_MODEL_H_
