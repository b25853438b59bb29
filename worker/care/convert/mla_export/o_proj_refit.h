// o_proj refitted to the export's attention (docs/conversion.md
// "DeepSeek-V3 layout", step 2b). The rope split and the latent change
// which tokens each head attends to and what it reads from them; o_proj
// still maps head outputs as the source's attention produced them. Given
// the exported layer, its head outputs Z [N, n_h·d_h] on calibration
// windows and the source layer's attention output Y [N, D] (after o_proj,
// the residual stream's view) are both known, and
//   W_o = argmin ‖Z·W_oᵀ − Y‖² + λ‖W_o − W_o,source‖²
// is one ridge regression over n_h·d_h features, shrunk towards the source's
// o_proj (λ from a small grid, by the held-out windows' error). The format is
// unchanged (o_proj is written anyway) and the KV cache untouched. For a head
// whose up-projection U_V,h [r, d_h] has rank r ≤ d_h this is also the best
// joint choice of U_V,h and o_proj: Z_h = (P_h·c)·U_V,h spans the attended
// latents P_h·c, so no refit of U_V could reach a lower error.
//
// It minimises the layer's own output error on the source's inputs; a
// least-squares map shrinks towards the mean where it cannot predict, and
// on one model and budget (stories260K, 87.5 %) that lowered every layer's
// error but raised the perplexity. So `auto` scores each split with and
// without the refit on the held-out windows (export_stages.cc), and a
// layer keeps the source's o_proj when the refit does not lower its
// held-out error.
#ifndef CARE_CONVERT_MLA_EXPORT_O_PROJ_REFIT_H_
#define CARE_CONVERT_MLA_EXPORT_O_PROJ_REFIT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/gqa_attention.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

// Calibration tokens the refit reads at most (the first ones): 32 windows
// of 256. The regression has n_h·d_h features; its Gram costs
// tokens·(n_h·d_h)² per candidate (0.3 TFLOP at 8B shape).
inline constexpr int64_t kOProjRefitTokens = 8192;

// The candidate-independent part of one layer's refit: the source's
// attention and its outputs on the fit and held-out windows (the inputs
// stay the caller's).
struct OProjRefitTargets {
  int64_t seq_len = 0;         // T, tokens per window
  GqaAttention<float> source;  // the layer as the source computes it
  MatrixRM y_fit, y_held;      // [N_fit, D], [N_held, D] source outputs
};

// x_fit / x_held: whole windows of seq_len tokens (positions 0..T-1 each).
// InvalidArgument on shapes; the source's errors name the tensor.
absl::StatusOr<OProjRefitTargets> PrepareOProjRefit(
    const ModelConfig& config, const TensorSource& weights, int64_t layer,
    int64_t seq_len, const Eigen::Ref<const MatrixRM>& x_fit,
    const Eigen::Ref<const MatrixRM>& x_held);

struct OProjRefit {
  MatrixRM o_proj;  // [D, n_h·d_h], empty when not kept
  // ‖ŷ − y‖²/‖y‖² on the held-out windows (the fit windows when there are
  // none) with the source's o_proj and with the refit (kept only when
  // lower).
  double heldout_before = 0, heldout_after = 0;
  double ridge = 0;  // the λ of the refit (absolute)
};

// The refit for the exported layer `mla` (no bias channel: InvalidArgument)
// on the inputs `targets` was prepared with; q_proj and weights as
// BuildAttentionTensors takes them.
absl::StatusOr<OProjRefit> RefitOProj(const OProjRefitTargets& targets,
                                      const Eigen::Ref<const MatrixRM>& x_fit,
                                      const Eigen::Ref<const MatrixRM>& x_held,
                                      int64_t layer, const MlaLayer& mla,
                                      const Tensor& q_proj,
                                      const LayerWeights& weights,
                                      int64_t num_heads);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_O_PROJ_REFIT_H_
