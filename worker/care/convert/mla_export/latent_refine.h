// Alternating refinement of the DeepSeek-V3 export's shared latent when its
// two halves are measured under different input moments (docs/conversion.md
// "DeepSeek-V3 layout", step 2). The attention objective weighs K_nope's
// error by the queries (M_j per KV head) under the input covariance C, and
// V's by o_proj (N_j) under the attention-averaged inputs' moment C̄_j
// (attended_inputs.h):
//   f(A, U) = β²·Σ_j tr(ΔK_jᵀ·C·ΔK_j·M_j) + Σ_j tr(ΔV_jᵀ·C̄_j·ΔV_j·N_j),
//   ΔK_j = W_K,j − A·U_K,j,  ΔV_j = W_V,j − A·U_V,j,
// with β² balancing the two halves' weighted energies (K/V balancing).
// No single whitening diagonalises both, so f has no closed-form minimum:
// starting from the joint factorization's latent A [D, r], each round
// regresses every U on A (exact), then solves the normal equations of A,
//   Σ_b C_b·A·(U_b·M_b·U_bᵀ) = Σ_b C_b·W_b·M_b·U_bᵀ,
// by conjugate gradients (matrix-free, warm-started). Both steps minimise f
// over their block, so f never increases; the result is kept only if it
// lowered f.
#ifndef CARE_CONVERT_MLA_EXPORT_LATENT_REFINE_H_
#define CARE_CONVERT_MLA_EXPORT_LATENT_REFINE_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "care/convert/mla_export/latent_objective.h"

namespace care::convert::mla {

struct LatentRefineInputs {
  const Eigen::MatrixXd* w_k = nullptr;         // [D, g·d_h] K_nope target
  const Eigen::MatrixXd* w_v = nullptr;         // [D, g·d_h] V target
  const Eigen::MatrixXd* covariance = nullptr;  // C [D, D]
  const std::vector<Eigen::MatrixXd>* value_moments = nullptr;  // [g] C̄_j
  const AttentionMetric* metric = nullptr;  // block-diagonal per KV head
  int64_t head_dim = 0;
  double damping = 0.01;  // ridge relative to each moment's mean diagonal
  int rounds = 4;
};

struct LatentRefineResult {
  Eigen::MatrixXd w_down;                            // [D, r]
  Eigen::MatrixXd up_k, up_v;                        // [r, g·d_h]
  double objective_before = 0, objective_after = 0;  // f, relative to energy
};

// `w_down`: the starting latent [D, r].
LatentRefineResult RefineLatent(const LatentRefineInputs& in,
                                const Eigen::MatrixXd& w_down);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_LATENT_REFINE_H_
