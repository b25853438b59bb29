// Llama, Mistral and Qwen2 decoder layers: pre-norm attention (optional
// q/k/v biases; o_proj bias only for Llama/Mistral with attention_bias, as in
// transformers, never for Qwen2) and a dense SwiGLU MLP.
#include <memory>

#include "care/engine/attention_block.h"
#include "care/engine/decoder_family.h"
#include "care/engine/mlp.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

class LlamaFamily : public DecoderFamily {
 public:
  absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                        compute::Matrix* hidden) const override {
    const ModelConfig& c = ctx.config;
    const bool qwen2 = c.model_type == "qwen2";
    CARE_RETURN_IF_ERROR(
        RunAttentionBlock(ctx, layer,
                          {.qk_norm = false,
                           .q_bias = c.attention_bias,
                           .o_bias = c.attention_bias && !qwen2},
                          hidden));
    return RunDenseMlpBlock(ctx, layer, hidden);
  }
};

}  // namespace

std::unique_ptr<DecoderFamily> MakeLlamaFamily() {
  return std::make_unique<LlamaFamily>();
}

}  // namespace care::engine
