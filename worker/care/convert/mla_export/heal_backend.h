// Healing (heal_layer.h) on compute::Backend: the same loss, analytic
// gradient and Adam loop as HealLoss / HealLayer, with the parameters,
// Adam moments and every activation of a step resident in the backend's
// memory (cpu: Eigen/OpenMP; cuda: the plugin's kernels and cuBLAS), so
// `--device cuda` heals on the GPU. The Eigen HealLoss<double> stays the
// float64 reference the tests compare against (heal_backend_test.cc).
//
// A step on a batch x [N, D] (N = windows·T), in backend ops:
//   qn = x·q_nopeᵀ, qp = rope(x·q_peᵀ), c = x·w_down, kp = rope(x·w_peᵀ),
//   kn = c·up_k, v = c·up_v                       (MatMul, ApplyRotary)
//   q = [qn_h | qp_h]_h, k = [kn_h | kp]_h        (CopyColumns, kp broadcast)
//   o = attention(q, k, v) with head width d_h + R, value width d_h
//   ŷ = o·o_projᵀ; loss Σ(ŷ − y)² (SquaredDistance, only when asked)
// and back: go = 2s(ŷ − y)·o_proj (Axpby, MatMul), CausalAttentionBackward,
// the column blocks split again (CopyColumns; AddColumns sums k_pe's heads),
// RoPE's transpose (ApplyRotary inverse) and the weight gradients
// (MatMulTransposeA). Only the batch (x, y) crosses from the host per step;
// the loss is brought back only where HealLayer reads it.
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_BACKEND_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_BACKEND_H_

#include <Eigen/Core>

#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/convert/mla_export/heal_layer.h"

namespace care::convert::mla {

// HealLoss<float> on the backend: Σ ‖ŷ − y‖² over x [W·T, D] (whole
// windows) and, with grad non-null, its gradient in every parameter
// (brought back to the host). Same checks and messages as HealLoss.
absl::StatusOr<double> HealLossOnBackend(
    compute::Backend& backend, const HealAttention<float>& a,
    const HealParams<float>& p, const Eigen::Ref<const HealMatrix<float>>& x,
    const Eigen::Ref<const HealMatrix<float>>& y, HealParams<float>* grad);

// HealLayer<float> on the backend, running the same schedule
// (heal_schedule.h): held-out error before and every eval_every steps (and
// at the last), the best parameters kept (never worse than the start),
// patience, cosine-decayed Adam with a per-block step relative to the
// block's starting RMS, windows shuffled by std::mt19937_64(seed), on_step
// after every step. `p` is the start and gets the kept parameters.
absl::StatusOr<HealResult> HealLayerOnBackend(
    compute::Backend& backend, const HealAttention<float>& a,
    HealParams<float>& p, const Eigen::Ref<const HealMatrix<float>>& x_train,
    const Eigen::Ref<const HealMatrix<float>>& y_train,
    const Eigen::Ref<const HealMatrix<float>>& x_heldout,
    const Eigen::Ref<const HealMatrix<float>>& y_heldout,
    const HealOptions& options);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_BACKEND_H_
