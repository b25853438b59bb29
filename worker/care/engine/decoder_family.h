// One decoder-layer implementation per architecture family (llama.cc,
// qwen3.cc, qwen3_moe.cc), sharing the blocks in attention_block.h, mlp.h.
// Internal to the engine.
#ifndef CARE_ENGINE_DECODER_FAMILY_H_
#define CARE_ENGINE_DECODER_FAMILY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/engine.h"
#include "care/engine/weight_loader.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct LayerContext {
  const ModelConfig& config;
  const TensorSource& weights;
  const LayerHooks& hooks;
  compute::Backend& backend;
  const compute::Matrix& rope_cos;  // [seq_len, rotary_dim / 2]
  const compute::Matrix& rope_sin;  // [seq_len, rotary_dim / 2]
  int64_t windows;
  int64_t seq_len;
  int64_t group_tokens;      // EngineOptions::group_tokens
  WeightPrefetch* prefetch;  // this layer's weights loaded ahead, or null
};

// Projection weight `name` [rows, cols] of the layer: from ctx.prefetch when
// it was loaded ahead, else loaded now.
absl::StatusOr<compute::Weight> LayerWeight(const LayerContext& ctx,
                                            const std::string& name,
                                            int64_t rows, int64_t cols);

// The 2-D weights of `layer` that are known before it runs (attention and
// dense MLP projections), for WeightPrefetch. MoE experts are not listed:
// which ones run depends on the routing.
std::vector<WeightRequest> LayerWeightRequests(const ModelConfig& config,
                                               int64_t layer);

class DecoderFamily {
 public:
  virtual ~DecoderFamily() = default;
  // Loads layer `layer`'s weights, runs every token of hidden [tokens, D]
  // through the layer in place, and drops the weights.
  virtual absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                                compute::Matrix* hidden) const = 0;
};

// llama, mistral and qwen2 (biases via config.attention_bias).
std::unique_ptr<DecoderFamily> MakeLlamaFamily();
// qwen3: q_norm / k_norm per head.
std::unique_ptr<DecoderFamily> MakeQwen3Family();
// qwen3_moe: qwen3 attention, sparse MoE MLP on the layers IsMoeLayer picks.
std::unique_ptr<DecoderFamily> MakeQwen3MoeFamily();

// deepseek_v3: multi-head latent attention, sigmoid-routed MoE
// (deepseek_v3.cc).
std::unique_ptr<DecoderFamily> MakeDeepseekV3Family();
// Its weights known before a layer runs (LayerWeightRequests for it).
std::vector<WeightRequest> DeepseekV3WeightRequests(const ModelConfig& config,
                                                    int64_t layer);

// The family for config.model_type; InvalidArgument listing the supported
// ones otherwise.
absl::StatusOr<std::unique_ptr<DecoderFamily>> MakeDecoderFamily(
    const ModelConfig& config);

}  // namespace care::engine

#endif  // CARE_ENGINE_DECODER_FAMILY_H_
