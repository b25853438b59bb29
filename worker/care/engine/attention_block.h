// The attention half of a decoder layer, shared by every family:
// hidden += o_proj(Attention(RoPE(q), RoPE(k), v)) with x = input_layernorm(
// hidden), q = x·W_Qᵀ (+ b_Q), and K/V from the layer's KvProjector. All
// tensor math runs on ctx.backend.
#ifndef CARE_ENGINE_ATTENTION_BLOCK_H_
#define CARE_ENGINE_ATTENTION_BLOCK_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "care/compute/backend.h"
#include "care/engine/decoder_family.h"

namespace care::engine {

struct AttentionBlockOptions {
  bool qk_norm = false;  // Qwen3: per-head RMSNorm of q and k before RoPE
  bool q_bias = false;   // q_proj.bias (k/v biases belong to the projector)
  bool o_bias = false;   // o_proj.bias (Llama with attention_bias; not Qwen2)
};

// Calls ctx.hooks.on_kv_input, then ctx.hooks.make_kv_projector (falling
// back to LoadKvProjector), in that order.
absl::Status RunAttentionBlock(const LayerContext& ctx, int64_t layer,
                               const AttentionBlockOptions& options,
                               compute::Matrix* hidden);

// Maps x [tokens, D] to y [tokens, D] (allocated by the caller); y does not
// alias x.
using MlpFn =
    std::function<absl::Status(const compute::Matrix& x, compute::Matrix* y)>;

// hidden += mlp(post_attention_layernorm(hidden)); `blocked`: in row blocks
// of ctx.group_tokens (dense MLPs), else all rows in one call (MoE, which
// must read each expert once).
absl::Status RunMlpBlock(const LayerContext& ctx, int64_t layer,
                         const MlpFn& mlp, bool blocked,
                         compute::Matrix* hidden);

// RunMlpBlock with the layer's dense SwiGLU MLP (mlp.{gate,up,down}_proj of
// width config.intermediate_size), in row blocks.
absl::Status RunDenseMlpBlock(const LayerContext& ctx, int64_t layer,
                              compute::Matrix* hidden);

}  // namespace care::engine

#endif  // CARE_ENGINE_ATTENTION_BLOCK_H_
