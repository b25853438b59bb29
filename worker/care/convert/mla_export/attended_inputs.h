// The second moment of the attention-averaged layer inputs, per KV head, for
// the V half of the DeepSeek-V3 export's joint latent (docs/conversion.md
// "DeepSeek-V3 layout", step 2). A head's output at query p is
// Σ_t a_{p,t}·v_t, so a V error e_t = x_t·ΔW reaches it as
// (Σ_t a_{p,t}·x_t)·ΔW = x̄_p·ΔW: what matters is ΔW under
//   C̄_j = mean over the query heads h of group j and the query rows p of
//         x̄_{h,p}ᵀ·x̄_{h,p},   x̄_{h,p} = Σ_{t ≤ p} a^h_{p,t}·x_t,
// not under C = E[xᵀx]. Errors of the keys a query averages over cancel,
// their attention-weighted mean does not (e.g. an attention sink's value,
// one token of many in C but most of the mass in C̄). a is the source's
// attention from the (folded) q/k projections with RoPE, on windows of
// NopeCorrectionInputs::seq_len tokens.
#ifndef CARE_CONVERT_MLA_EXPORT_ATTENDED_INPUTS_H_
#define CARE_CONVERT_MLA_EXPORT_ATTENDED_INPUTS_H_

#include <Eigen/Core>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/nope_correction.h"

namespace care::convert::mla {

// [g] matrices C̄_j [D, D]; x [windows·seq_len, D] (whole windows,
// positions 0..seq_len-1 each). `in.rope` only gives the shape.
// InvalidArgument on shapes.
absl::StatusOr<std::vector<Eigen::MatrixXd>> AttendedInputMoments(
    const NopeCorrectionInputs& in, const Eigen::Ref<const MatrixRM>& x);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_ATTENDED_INPUTS_H_
