// The objective of the DeepSeek-V3 export's joint latent (docs/conversion.md
// "DeepSeek-V3 layout", step 2). The plain activation objective (TransMLA's
// PCA, and `care` with `--latent-objective activation`) reproduces
// [K_nope; V] in the input-covariance norm, every key and value dimension
// alike. What the model sees is different: a NoPE key error δk of KV group j
// changes head h's score by q̃_hᵀ·δk (q̃_h the query that meets k_nope in the
// export: folded, NoPE-corrected), and a value error δv changes the
// attention output by O_h·δv (O_h the head's o_proj columns). Averaged over
// the calibration queries,
//   E[score error²]  = δkᵀ·M_j·δk,  M_j = Σ_{h∈j} W̃_h·C·W̃_hᵀ    [d_h, d_h]
//   E[output error²] ≤ δvᵀ·N_j·δv,  N_j = Σ_{h∈j} O_hᵀ·O_h        [d_h, d_h]
// (W̃_h the corrected q rows of head h, C the inputs' covariance; the value
// bound ignores how attention mixes tokens). The `attention` objective
// factorizes [β·K_nope·M^½, V·N^½] instead of [β·K_nope, V] under the same
// input covariance (damping as always): key directions the queries do not
// read (e.g. fast frequencies whose NoPE correction shrank to ~0) and value
// directions o_proj discards stop competing for the latent. β balances the
// two halves' *weighted* calibration energy (--no-kv-balance: β = 1). The
// up-projections are then the least-squares regressions of K_nope and V on
// the latent (optimal for any output metric once the latent is fixed), so
// no M^-½ is ever formed and full rank stays exact.
#ifndef CARE_CONVERT_MLA_EXPORT_LATENT_OBJECTIVE_H_
#define CARE_CONVERT_MLA_EXPORT_LATENT_OBJECTIVE_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

// Block-diagonal right-hand weights of the attention objective, in the
// activation layout ([g·d_h, g·d_h], block j for KV group j): the key block
// M_j^½ and the value block N_j^½ (symmetric PSD square roots).
struct AttentionMetric {
  Eigen::MatrixXd key_sqrt;    // [g·d_h, g·d_h]
  Eigen::MatrixXd value_sqrt;  // [g·d_h, g·d_h]
  bool empty() const { return key_sqrt.size() == 0; }
};

// q_rows: [n_h·d_h, D] the q rows that meet k_nope in the export (folds and
// NoPE correction applied); o_proj: [D, n_h·d_h] (the checkpoint's layout);
// covariance: [D, D] of the layer input. InvalidArgument on shapes.
absl::StatusOr<AttentionMetric> BuildAttentionMetric(
    const MatrixRM& q_rows, const MatrixRM& o_proj,
    const Eigen::MatrixXd& covariance, int64_t num_kv_heads, int64_t head_dim);

// The least-squares up-projection of `target` [D, out] from the latent
// c = x·w_down: argmin_U tr((W − w_down·U)ᵀ·C·(W − w_down·U)), [r, out],
// with C the given covariance plus `ridge`·mean(diag C)·I.
Eigen::MatrixXd RegressUp(const Eigen::MatrixXd& w_down,
                          const Eigen::MatrixXd& target,
                          const Eigen::MatrixXd& covariance, double ridge);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_LATENT_OBJECTIVE_H_
