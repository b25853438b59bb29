// The attention half of a decoder layer, shared by every family:
// hidden += o_proj(Attention(RoPE(q), RoPE(k), v)) with x = input_layernorm(
// hidden), q = x·W_Qᵀ (+ b_Q), and K/V from the layer's KvProjector.
#ifndef CARE_ENGINE_ATTENTION_BLOCK_H_
#define CARE_ENGINE_ATTENTION_BLOCK_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "care/engine/decoder_family.h"
#include "care/io/tensor.h"

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
                               MatrixRM* hidden);

// Maps x [tokens, D] to y [tokens, D]; y does not alias x.
using MlpFn = std::function<absl::Status(const MatrixRM& x, MatrixRM* y)>;

// hidden += mlp(post_attention_layernorm(hidden)); `blocked`: in row blocks
// of ctx.group_tokens (dense MLPs), else all rows in one call (MoE, which
// must read each expert once).
absl::Status RunMlpBlock(const LayerContext& ctx, int64_t layer,
                         const MlpFn& mlp, bool blocked, MatrixRM* hidden);

// RunMlpBlock with the layer's dense SwiGLU MLP (mlp.{gate,up,down}_proj of
// width config.intermediate_size), in row blocks.
absl::Status RunDenseMlpBlock(const LayerContext& ctx, int64_t layer,
                              MatrixRM* hidden);

// Loads a 1-D norm weight [n] as a row vector.
absl::StatusOr<Eigen::RowVectorXf> LoadNormWeight(const TensorSource& source,
                                                  const std::string& name,
                                                  int64_t n);

}  // namespace care::engine

#endif  // CARE_ENGINE_ATTENTION_BLOCK_H_
