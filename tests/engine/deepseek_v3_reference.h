// A deliberately plain DeepSeek-V3 forward pass for tests: float64, one token
// at a time, loops only, written from transformers' modeling_deepseek_v3.py,
// configuration_deepseek_v3.py and modeling_rope_utils.py. It shares no code
// with the engine: config.json is read here with transformers' defaults for
// absent keys (not through care::ModelConfig), and tensors come through the
// io TensorSource only. Reusable by any test that needs DeepSeek-V3 logits
// (the engine family, exported checkpoints).
#ifndef CARE_TESTS_ENGINE_DEEPSEEK_V3_REFERENCE_H_
#define CARE_TESTS_ENGINE_DEEPSEEK_V3_REFERENCE_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/io/tensor_source.h"

namespace care::testing {

// DeepseekV3Config as transformers builds it from config.json.
struct DeepseekV3RefConfig {
  int64_t vocab_size = 129280;
  int64_t hidden_size = 7168;
  int64_t intermediate_size = 18432;
  int64_t moe_intermediate_size = 2048;
  int64_t num_hidden_layers = 61;
  int64_t num_attention_heads = 128;
  int64_t num_key_value_heads = 128;  // null: num_attention_heads
  int64_t n_shared_experts = 1;
  int64_t n_routed_experts = 256;
  double routed_scaling_factor = 2.5;
  int64_t kv_lora_rank = 512;
  std::optional<int64_t> q_lora_rank = 1536;  // null: q_proj
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t qk_nope_head_dim = 128;
  int64_t n_group = 8;
  int64_t topk_group = 4;
  int64_t num_experts_per_tok = 8;
  int64_t first_k_dense_replace = 3;
  bool norm_topk_prob = true;
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  double rope_theta = 10000.0;
  bool rope_interleave = true;
  bool attention_bias = false;
  // rope_scaling (or transformers 5's rope_parameters); null/absent: none.
  nlohmann::json rope_scaling;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

// Parses config.json. InvalidArgument for what transformers cannot run:
// model_type other than deepseek_v3, a head_dim key different from
// qk_rope_head_dim, num_key_value_heads != num_attention_heads.
absl::StatusOr<DeepseekV3RefConfig> ParseDeepseekV3RefConfig(
    const nlohmann::json& config);

// RoPE inverse frequencies [qk_rope_head_dim / 2] and the cos/sin factor
// (modeling_rope_utils: default, linear, llama3, yarn).
absl::StatusOr<std::vector<double>> DeepseekV3RefInvFreq(
    const DeepseekV3RefConfig& config, double* attention_factor);

// The softmax scale qk_head_dim^-0.5, times yarn_get_mscale(factor,
// mscale_all_dim)^2 when rope scaling is on and mscale_all_dim is set.
double DeepseekV3RefSoftmaxScale(const DeepseekV3RefConfig& config);

using RefRows = std::vector<std::vector<double>>;  // [tokens][n]

// Logits [T][V] of one window of token ids at positions 0..T-1.
absl::StatusOr<RefRows> DeepseekV3ReferenceLogits(
    const DeepseekV3RefConfig& config, const TensorSource& weights,
    const std::vector<int32_t>& ids);

// The same for a Hugging Face directory: <dir>/config.json and its
// safetensors (single file or sharded).
absl::StatusOr<RefRows> DeepseekV3ReferenceLogits(
    const std::string& dir, const std::vector<int32_t>& ids);

}  // namespace care::testing

#endif  // CARE_TESTS_ENGINE_DEEPSEEK_V3_REFERENCE_H_
