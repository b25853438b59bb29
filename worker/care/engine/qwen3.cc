// Qwen3 decoder layers: Llama's layout plus a per-head RMSNorm of q and k
// (q_norm/k_norm, weights [d_h]) applied before RoPE. Biases follow
// config.attention_bias on q/k/v and o_proj alike, as in transformers.
#include <memory>

#include "care/engine/attention_block.h"
#include "care/engine/decoder_family.h"
#include "care/engine/mlp.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

class Qwen3Family : public DecoderFamily {
 public:
  absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                        compute::Matrix* hidden) const override {
    const ModelConfig& c = ctx.config;
    CARE_RETURN_IF_ERROR(RunAttentionBlock(ctx, layer,
                                           {.qk_norm = true,
                                            .q_bias = c.attention_bias,
                                            .o_bias = c.attention_bias},
                                           hidden));
    return RunDenseMlpBlock(ctx, layer, hidden);
  }
};

}  // namespace

std::unique_ptr<DecoderFamily> MakeQwen3Family() {
  return std::make_unique<Qwen3Family>();
}

}  // namespace care::engine
