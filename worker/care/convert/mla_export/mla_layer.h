// One attention layer exported to DeepSeek-V3 MLA (method.md §5,
// docs/conversion.md "DeepSeek-V3 layout"), as plain values: the rope split
// (rope_split.h), the joint latent over [K_nope; V] and the kv_a_layernorm
// linear-regime scale. Everything the written tensors need is here, so a
// later stage (healing) can adjust these values and rewrite the tensors.
//
// Per token x [D] (post input_layernorm) and query head h of KV group j:
//   c      = x·W_down                           [r]   the cached latent
//   k_pe   = pe·W_Kᵀ·x                           [R]   shared, gets RoPE
//   k_nope = (c·U_K)[j]   ≈ ((I − Π)·W_Kᵀ·x)[j]  [d_h]
//   v      = (c·U_V)[j]   ≈ (W_Vᵀ·x)[j]          [d_h]
//   q_nope = s·q_h,  q_pe = s·pe[:, j]·q_h        (s folds the softmax scale)
// so q_nope·k_nope + q_pe·k_pe = s²·q_h·k_j before RoPE and truncation.
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_LAYER_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_LAYER_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/factorize.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/latent_objective.h"
#include "care/convert/mla_export/rope_split.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

// The square root of the latent norms' fixed eps (1e-6) in transformers'
// DeepSeek-V3 (and vLLM/SGLang): in the linear regime the norm divides by it.
inline constexpr double kLatentNormSqrtEps = 1e-3;

struct MlaLayerOptions {
  int64_t num_heads = 0;     // n_h
  RopeSplitShape rope;       // g, d_h, R, K
  int64_t kv_lora_rank = 0;  // r
  FactorizeOptions factorize;
  // Scale K_nope and V to equal calibration energy before the joint
  // factorization (and back after), so neither dominates the latent; with
  // `metric`, equal weighted energy.
  bool balance_kv = true;
  // The attention objective's weights (latent_objective.h); empty: the
  // plain activation objective.
  AttentionMetric metric;
  // With `metric`: [g] second moments [D, D] of the attention-averaged
  // inputs (attended_inputs.h); V's up-projection of KV head j is then its
  // regression on the latent under the j-th, not under C. Empty: C.
  std::vector<Eigen::MatrixXd> value_moments;
  // With value_moments: rounds of the alternating latent fit
  // (latent_refine.h).
  int latent_refine_rounds = 4;
  // Target of α²·E[mean(c²)] / (2·eps): the expected relative error of the
  // latent norm's linear regime; α is the power of two that meets it.
  double norm_error_target = 0x1p-30;
  // [D] the calibration inputs' mean, with k biases (Qwen2): the rope
  // split's key Gram is then the biased keys' second moment (mla_bias.h).
  Eigen::VectorXd input_mean;
};

struct MlaLayer {
  RopeSplit rope;
  // [D, r]: c = x·w_down (the latent before the α scale).
  MatrixRM w_down;
  // [r, g·d_h] each: k_nope (all KV heads) = c·up_k, v = c·up_v.
  MatrixRM up_k, up_v;
  double q_scale = 1;  // s = sqrt((d_h + R) / d_h)
  // α = 2^-alpha_log2; kv_a_proj latent rows are α·w_downᵀ, the norm weight
  // is 1/α and kv_b_proj carries sqrt(eps): every factor a power of two but
  // sqrt(eps), so bf16 and f32 store them without extra rounding.
  int alpha_log2 = 0;
  // Expected relative error of the norm's linear regime α²·E[mean c²]/2e-6
  // on the calibration tokens, and the worst over the tokens measured
  // (MeasureNormError; 0 until measured).
  double norm_error_mean = 0;
  double norm_error_max = 0;
  // Joint factorization: retained energy of the method's scaled spectrum,
  // and the relative activation errors of K (whole key, RoPE part exact)
  // and V on the calibration tokens.
  double retained_energy = 1;
  double calib_error_k = 0, calib_error_v = 0;
  double balance_k = 1, balance_v = 1;  // β_K, β_V used
  ScalingInfo scaling;
  // Qwen3 q_norm/k_norm folded into the projections (qk_norm_fold.h):
  // multipliers of the q_proj rows [n_h·d_h] and k_proj rows [g·d_h];
  // empty for models without per-head norms.
  Eigen::VectorXf q_fold, k_fold;
  // The regression fold (qk_norm_fold.h): the folded q_proj [n_h·d_h, D]
  // and k_proj [g·d_h, D] themselves, used instead of q_fold / k_fold;
  // empty for the scalar fold.
  MatrixRM q_regression, k_regression;
  // Attention-weighted NoPE correction (nope_correction.h): 2×2 per query
  // head and source frequency applied to the q_nope rows; empty: none.
  std::vector<Eigen::Matrix2d> nope_correction;
  double nope_dropped_error = 0, nope_corrected_error = 0;
  // Healing (heal_layer.h): the healed attention parameters, written instead
  // of those derived from the fields above (with alpha_log2); null: none.
  std::shared_ptr<const HealParams<float>> healed;
  // o_proj.weight refitted to this layer's attention (o_proj_refit.h)
  // [D, n_h·d_h]; empty: the source's is written.
  MatrixRM o_proj;

  // Qwen2 q/k/v biases (mla_bias.h): one more latent channel, constant 1
  // (zero weights, bias α), whose kv_b_proj column carries the k_nope and
  // v biases; the q bias goes through a q_lora path of rank D + 1 whose
  // norm uses α_q = 2^-q_alpha_log2.
  bool bias_channel = false;
  int q_alpha_log2 = 0;

  // The written kv_lora_rank: the fitted rank plus the bias channel.
  int64_t kv_lora_rank() const {
    return w_down.cols() + (bias_channel ? 1 : 0);
  }
  int64_t fitted_rank() const { return w_down.cols(); }
  double alpha() const;
};

// `weights` with the layer's k fold applied (as given without one): the K
// projection the export factorizes.
LayerWeights FoldedWeights(const LayerWeights& weights, const MlaLayer& layer);

// q_proj rows [n_h·d_h, D] with the layer's q fold applied (as given
// without one): the query projection the export writes.
MatrixRM FoldedQProj(const MatrixRM& q_proj, const MlaLayer& layer);

// The rank-independent part of a layer's export: the rope split and the
// full spectrum of the (balanced, scaled) joint [K_nope; V] projection, so
// several kv_lora_ranks truncate one decomposition.
struct PreparedLayer {
  RopeSplit rope;
  // [D, 2·g·d_h] = [β_K·W_K·(I − Π), W_V]; with the attention objective
  // [β_K·W_K·(I − Π)·M^½, W_V·N^½].
  MatrixRM joint;
  // The attention objective only: [D, 2·g·d_h] = [W_K·(I − Π), W_V], which
  // the up-projections regress on the latent; empty otherwise.
  MatrixRM plain;
  Decomposition decomposition;
  ScalingInfo scaling;
  double balance_k = 1;
  double q_scale = 1;
};

// InvalidArgument on shapes or a bad rope split.
absl::StatusOr<PreparedLayer> PrepareLayer(const LayerWeights& weights,
                                           const LayerStatistics& stats,
                                           const MlaLayerOptions& options);

// The layer at options.kv_lora_rank (in [1, min(D, 2·g·d_h)], else
// InvalidArgument); `covariance` is the calibration C (for α and errors).
absl::StatusOr<MlaLayer> TruncatePrepared(const PreparedLayer& prepared,
                                          const LayerWeights& weights,
                                          const Eigen::MatrixXd& covariance,
                                          const MlaLayerOptions& options);

// PrepareLayer + TruncatePrepared.
absl::StatusOr<MlaLayer> ExportLayer(const LayerWeights& weights,
                                     const LayerStatistics& stats,
                                     const MlaLayerOptions& options);

// Relative errors ‖Y − Ŷ‖²/‖Y‖² of K (K_nope reconstruction plus the exact
// RoPE part) and V under a covariance C of any token set.
struct KvErrors {
  double k = 0, v = 0;
};
KvErrors RelativeErrors(const MlaLayer& layer, const LayerWeights& weights,
                        const Eigen::MatrixXd& covariance);

// The power of two α = 2^-a (a in [10, 40]) for which α²·energy/(2·eps)
// meets `target`; energy is E[mean(c²)] of what the latent norm sees.
int NormAlphaLog2(double energy, double target);

// Updates norm_error_max with the tokens x [N, D] (e.g. held-out rows).
void MeasureNormError(const Eigen::Ref<const MatrixRM>& x, MlaLayer& layer);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_LAYER_H_
