// Attention-weighted NoPE correction for the DeepSeek-V3 export
// (docs/conversion.md "DeepSeek-V3 layout", step 1b). After the rope split,
// the NoPE part k̃ = (I − Π)·k of every key loses its rotation: the source
// scores it as q_fᵀ·R(−Δ·θ_f)·k̃_f (pair f, relative distance Δ = p − t),
// the export as q_fᵀ·k̃_f. Any fixed 2×2 matrix M per query head and
// frequency can stand in for the rotation at no cost in the format (it is
// folded into the q_nope rows as M_fᵀ). M_f = I is plain dropping; here
// M_f minimises the attention-weighted squared score error on the
// calibration windows,
//   Σ_windows Σ_{p ≥ t} a_{p,t} · (q_{p,f}ᵀ·(R(−Δθ_f) − M_f)·k̃_{t,f})²,
// with a_{p,t} the original model's attention probabilities: a 4-unknown
// least-squares problem per (head, frequency). M_f = I is feasible, so the
// fit is never worse than dropping on the calibration windows; for fast
// frequencies, whose rotation averages out over the attended distances, M
// shrinks towards 0 instead of keeping a misleading unrotated term.
#ifndef CARE_CONVERT_MLA_EXPORT_NOPE_CORRECTION_H_
#define CARE_CONVERT_MLA_EXPORT_NOPE_CORRECTION_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/convert/mla_export/rope_split.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

struct NopeCorrectionInputs {
  const MatrixRM* w_q = nullptr;  // [n_h·d_h, D] q_proj (folds applied)
  const MatrixRM* w_k = nullptr;  // [D, g·d_h] (activation layout, folded)
  const RopeSplit* rope = nullptr;
  std::vector<double> inv_freq;  // [d_h/2] source RoPE frequencies
  int64_t num_heads = 0;         // n_h
  int64_t seq_len = 0;           // tokens per calibration window
};

// RoPE at positions 0..T-1 of a window (half-split pairs), for the fits
// that recompute the source's attention on calibration windows.
struct WindowRope {
  Eigen::MatrixXd cos, sin;  // [T, d_h/2]: position·θ_f
  // m [T, heads·d_h], every head rotated.
  Eigen::MatrixXd Apply(const Eigen::MatrixXd& m, int64_t heads) const;
};
WindowRope MakeWindowRope(const std::vector<double>& inv_freq, int64_t seq_len);

// Checks `in` (q/k projections, rope shape, inv_freq) against x
// [windows·seq_len, D]: InvalidArgument "<what>: inconsistent shapes (...)"
// with every shape otherwise. Shared by the fits that read the source's
// attention on whole windows (nope correction and scale, attended inputs).
absl::Status CheckNopeInputs(const NopeCorrectionInputs& in,
                             const Eigen::Ref<const MatrixRM>& x,
                             absl::string_view what);

// [n_h·d_h, n_h·d_h] block-diagonal map for the q rows of every head:
// per head h and pair f, rows (f, f + d_h/2) of q_h become M_{h,f}ᵀ times
// them. x: [windows·seq_len, D] calibration rows (whole windows, positions
// 0..seq_len-1 each). InvalidArgument on shapes.
struct NopeCorrection {
  std::vector<Eigen::Matrix2d> m;  // [n_h · d_h/2], M_{h,f} at h·d_h/2 + f
  // Attention-weighted score error of dropping (M = I) and of the fit,
  // relative to the weighted NoPE score energy, on the calibration windows.
  double dropped_error = 0, corrected_error = 0;
};
absl::StatusOr<NopeCorrection> FitNopeCorrection(
    const NopeCorrectionInputs& in, const Eigen::Ref<const MatrixRM>& x);

// Applies the correction to head h's q rows [d_h, D] (the q_nope rows).
void CorrectQueryRows(const NopeCorrection& c, int64_t head, int64_t head_dim,
                      MatrixRM& rows);

// q_proj rows [n_h·d_h, D] with every head's correction applied (as given
// when `c` is empty): the queries that meet k_nope.
MatrixRM CorrectedQueryProjection(const NopeCorrection& c, int64_t head_dim,
                                  MatrixRM q_rows);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_NOPE_CORRECTION_H_
