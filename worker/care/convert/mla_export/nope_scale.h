// Attention-calibrated scale of the NoPE score for the DeepSeek-V3 export
// (docs/conversion.md "DeepSeek-V3 layout", step 1c). The NoPE correction
// (nope_correction.h) fits each (head, frequency) 2×2 map by least squares
// weighted by the source's attention: it never looks at the key positions
// the source ignores, where an unrotated NoPE score can be large and pull
// the export's attention away (a false positive), and its 32-token
// calibration windows hide the long distances where the dropped slow
// frequencies have rotated most. So, per query head h, one scale γ_h of the
// corrected NoPE score is fitted to the source's attention itself, on
// windows of `span` tokens (NopeScaleWindow): the export's attention logits
// are z = S_pe + γ_h·S_nope (S_pe the kept RoPE part, exact; S_nope the
// corrected NoPE part q̃ᵀ·k̃), and γ_h minimises
//   Σ_windows Σ_p KL(softmax(z_p) ‖ a_p)
// with a_p the source's attention of query p. This direction of the KL
// (the export's distribution first) is the one that charges attention put
// where the source puts none; the other (a's cross-entropy under the
// export) forgives it. It is not convex in γ: a grid on [0, kMaxNopeScale]
// and a golden-section refinement find the minimum; γ = 1 (the correction
// as fitted) is kept when nothing beats it, γ = 0 drops the NoPE score.
// γ_h folds into head h's q_nope rows like the correction (free in the
// format).
#ifndef CARE_CONVERT_MLA_EXPORT_NOPE_SCALE_H_
#define CARE_CONVERT_MLA_EXPORT_NOPE_SCALE_H_

#include <Eigen/Core>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/nope_correction.h"

namespace care::convert::mla {

inline constexpr double kMaxNopeScale = 2.0;
// Calibration tokens the fit reads at most (the first ones): 8 windows of
// 256 tokens hold ~0.26 M attention pairs per head, plenty for one number,
// and the fit's cost grows with tokens × window (× every auto candidate).
inline constexpr int64_t kNopeScaleTokens = 2048;

struct NopeScale {
  std::vector<double> gamma;  // [n_h]
  // Mean KL(softmax(z) ‖ a) per query position on the fit's windows with
  // γ = 1 (the 2×2 correction alone) and with the fitted γ.
  double kl_unscaled = 0, kl_scaled = 0;
};

// `m`: the 2×2 maps of FitNopeCorrection ([n_h·d_h/2]); x as there.
// InvalidArgument on shapes.
absl::StatusOr<NopeScale> FitNopeScale(const NopeCorrectionInputs& in,
                                       const std::vector<Eigen::Matrix2d>& m,
                                       const Eigen::Ref<const MatrixRM>& x);

// The fit's window length: `span` capped by the model's positions and the
// calibration tokens, rounded down to whole calibration windows (at least
// one). The calibration windows are short (32 tokens in the protocol):
// over a few positions the dropped slow frequencies barely rotate, so the
// NoPE score looks harmless there; `span` consecutive windows, renumbered
// 0..span-1, show the fit the long distances where it is not.
int64_t NopeScaleWindow(int64_t span, int64_t max_positions,
                        int64_t calib_seq_len, int64_t calib_tokens);

// Multiplies head h's maps by γ_h.
void ApplyNopeScale(const NopeScale& scale, int64_t head_dim,
                    std::vector<Eigen::Matrix2d>& m);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_NOPE_SCALE_H_
