// Qwen3's per-head q_norm / k_norm for the DeepSeek-V3 export
// (docs/conversion.md "DeepSeek-V3 layout"). DeepSeek-V3 has no per-head
// norm before RoPE, so RMSNorm(q_h) = w ⊙ q_h / rms(q_h) (rms including
// rms_norm_eps) is replaced by the linear map s_h·(w ⊙ q_h), folded into the
// q_proj rows (and likewise for each KV head's k_proj rows). s_h is the
// least-squares optimum on the calibration tokens:
//   s_h = argmin_s E‖w⊙q_h/rms − s·w⊙q_h‖² = E[‖w⊙q_h‖²/rms] / E[‖w⊙q_h‖²].
// The approximation is exact for tokens whose head rms equals 1/s_h; its
// loss is measured by the report's "partial RoPE only" perplexity.
#ifndef CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_
#define CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/statusor.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

struct QkNormFold {
  Eigen::VectorXf q;  // [n_h·d_h] multiplies q_proj rows (w ⊙ s_h per head)
  Eigen::VectorXf k;  // [g·d_h] multiplies k_proj rows
  Eigen::VectorXd q_scale, k_scale;  // [n_h], [g]: s_h
};

// For config.qk_norm models: reads q_proj, k_proj, q_norm and k_norm of
// `layer` and fits s_h on x [N, D] (the layer's post-norm input).
absl::StatusOr<QkNormFold> FitQkNormFold(const ModelConfig& config,
                                         const TensorSource& weights,
                                         int64_t layer,
                                         const Eigen::Ref<const MatrixRM>& x);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_QK_NORM_FOLD_H_
