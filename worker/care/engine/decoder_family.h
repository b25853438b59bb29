// One decoder-layer implementation per architecture family (llama.cc,
// qwen3.cc, qwen3_moe.cc), sharing the blocks in attention_block.h, mlp.h.
// Internal to the engine.
#ifndef CARE_ENGINE_DECODER_FAMILY_H_
#define CARE_ENGINE_DECODER_FAMILY_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/engine/engine.h"
#include "care/engine/rope.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct LayerContext {
  const ModelConfig& config;
  const TensorSource& weights;
  const LayerHooks& hooks;
  const RopeTable& rope;
  int64_t windows;
  int64_t seq_len;
  int64_t group_tokens;  // EngineOptions::group_tokens
};

class DecoderFamily {
 public:
  virtual ~DecoderFamily() = default;
  // Loads layer `layer`'s weights, runs every token of hidden [tokens, D]
  // through the layer in place, and drops the weights.
  virtual absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                                MatrixRM* hidden) const = 0;
};

// llama, mistral and qwen2 (biases via config.attention_bias).
std::unique_ptr<DecoderFamily> MakeLlamaFamily();
// qwen3: q_norm / k_norm per head.
std::unique_ptr<DecoderFamily> MakeQwen3Family();
// qwen3_moe: qwen3 attention, sparse MoE MLP on the layers IsMoeLayer picks.
std::unique_ptr<DecoderFamily> MakeQwen3MoeFamily();

// The family for config.model_type; InvalidArgument listing the supported
// ones otherwise.
absl::StatusOr<std::unique_ptr<DecoderFamily>> MakeDecoderFamily(
    const ModelConfig& config);

}  // namespace care::engine

#endif  // CARE_ENGINE_DECODER_FAMILY_H_
