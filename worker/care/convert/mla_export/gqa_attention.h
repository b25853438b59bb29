// The original GQA layer's attention output, the target of healing
// (heal_layer.h): per window of T tokens (positions 0..T-1) and query
// head h of KV group j,
//   q_h = norm_q(W_q,h·x), k_j = norm_k(W_k,j·x), v_j = W_v,j·x
// (norm: Qwen3's per-head RMSNorm, identity otherwise), HF half-split RoPE
// on q and k, causal softmax(q·k / sqrt(d_h))·v, then o_proj. Written
// independently of the engine's kernels, in the precision S.
#ifndef CARE_CONVERT_MLA_EXPORT_GQA_ATTENTION_H_
#define CARE_CONVERT_MLA_EXPORT_GQA_ATTENTION_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

template <typename S>
struct GqaAttention {
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  HealMatrix<S> w_q;       // [n_h·d_h, D] q_proj.weight
  HealMatrix<S> w_k, w_v;  // [g·d_h, D] k_proj / v_proj.weight
  HealMatrix<S> w_o;       // [D, n_h·d_h] o_proj.weight
  Eigen::Matrix<S, 1, Eigen::Dynamic> q_norm, k_norm;  // [d_h] or empty
  double norm_eps = 1e-6;
  std::vector<double> inv_freq;  // [d_h/2] source RoPE
  double attention_factor = 1;   // multiplies cos and sin (yarn)
};

// Reads layer `layer` of a GQA checkpoint (no attention biases: the
// export refuses them). InvalidArgument naming the tensor on bad shapes.
template <typename S>
absl::StatusOr<GqaAttention<S>> LoadGqaAttention(const ModelConfig& config,
                                                 const TensorSource& weights,
                                                 int64_t layer);

// [W·T, D]: the layer's attention output after o_proj for x [W·T, D].
template <typename S>
absl::StatusOr<HealMatrix<S>> GqaAttentionOutput(
    const GqaAttention<S>& a, int64_t seq_len,
    const Eigen::Ref<const HealMatrix<S>>& x);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_GQA_ATTENTION_H_
