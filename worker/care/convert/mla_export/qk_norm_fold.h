// Qwen3's per-head q_norm / k_norm for the DeepSeek-V3 export
// (docs/conversion.md "DeepSeek-V3 layout", step 5). DeepSeek-V3 has no
// per-head norm before RoPE, so the normed query / key of each head,
// RMSNorm(q_h) = w ⊙ q_h / rms(q_h) (rms including rms_norm_eps), is
// replaced by a linear map of the layer input x, folded into q_proj / k_proj:
// - scalar: s_h·(w ⊙ q_h), s_h the least-squares optimum on the calibration
//   tokens, s_h = E[‖w⊙q_h‖²/rms] / E[‖w⊙q_h‖²]; exact for tokens whose head
//   rms equals 1/s_h.
// - regression: the map x ↦ x·B minimising E‖T(x) − x·B‖² over all
//   [D, d_h] maps, T(x) the true normed rows: B = (C + λI)⁻¹(E[xᵀT] + λB₀)
//   with C = E[xᵀx] and B₀ the scalar fold (the ridge shrinks towards it).
//   The scalar fold is one point of this family, so on the calibration
//   tokens the regression's error is never larger; the latent then
//   compresses these regressed keys under C, i.e. the reduced-rank
//   regression of the true keys (method.md §5).
#ifndef CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_
#define CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

// Ridge of the regression fold relative to mean(diag C): small against the
// calibration's N ≫ D rows, large enough to pin directions C barely sees
// to the scalar fold.
inline constexpr double kQkFoldRidge = 1e-3;

struct QkNormFold {
  Eigen::VectorXf q;  // [n_h·d_h] multiplies q_proj rows (w ⊙ s_h per head)
  Eigen::VectorXf k;  // [g·d_h] multiplies k_proj rows
  Eigen::VectorXd q_scale, k_scale;  // [n_h], [g]: s_h
  // The regression fold only: the folded projections themselves (PyTorch
  // layout, [n_h·d_h, D] and [g·d_h, D]), which replace q_fold ⊙ q_proj and
  // k_fold ⊙ k_proj; empty for the scalar fold.
  MatrixRM q_proj, k_proj;
};

// For config.qk_norm models: reads q_proj, k_proj, q_norm and k_norm of
// `layer` and fits the fold on x [N, D] (the layer's post-norm input).
absl::StatusOr<QkNormFold> FitQkNormFold(const ModelConfig& config,
                                         const TensorSource& weights,
                                         int64_t layer,
                                         const Eigen::Ref<const MatrixRM>& x,
                                         bool regression = false);

// [N, heads·d_h]: RMSNorm per head of y = x·Wᵀ with weight w [d_h], what the
// source computes (the regression's target; tests measure folds against it).
Eigen::MatrixXd NormedHeads(const Eigen::MatrixXd& y, const Eigen::VectorXd& w,
                            int64_t heads, int64_t dh, double eps);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_
