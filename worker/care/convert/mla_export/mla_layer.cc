#include "care/convert/mla_export/mla_layer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/latent_refine.h"
#include "care/convert/mla_export/mla_bias.h"

namespace care::convert::mla {
namespace {

// The eps of kv_a_layernorm (fixed in transformers' DeepSeek-V3).
constexpr double kLatentNormEps = kLatentNormSqrtEps * kLatentNormSqrtEps;
// α = 2^-a with a in this range: below 2^-40, α·c of small latents nears
// float32's normal range; above 2^-10 the regime is not linear enough.
constexpr int kMinAlphaLog2 = 10;
constexpr int kMaxAlphaLog2 = 40;

double Trace(const Eigen::MatrixXd& w, const Eigen::MatrixXd& c) {
  return (w.transpose() * c * w).trace();  // tr(Wᵀ·C·W)
}

}  // namespace

double MlaLayer::alpha() const { return std::ldexp(1.0, -alpha_log2); }

LayerWeights FoldedWeights(const LayerWeights& weights, const MlaLayer& layer) {
  LayerWeights out = weights;
  if (layer.k_regression.rows() == out.w_k.cols()) {
    out.w_k = layer.k_regression.transpose();  // [D, g·d_h]
  } else if (layer.k_fold.size() == out.w_k.cols()) {
    out.w_k = out.w_k * layer.k_fold.asDiagonal();  // [D, g·d_h]
    if (out.b_k) *out.b_k = out.b_k->cwiseProduct(layer.k_fold.transpose());
  }
  return out;
}

MatrixRM FoldedQProj(const MatrixRM& q_proj, const MlaLayer& layer) {
  if (layer.q_regression.rows() == q_proj.rows()) return layer.q_regression;
  if (layer.q_fold.size() == q_proj.rows()) {
    return layer.q_fold.asDiagonal() * q_proj;  // [n_h·d_h, D]
  }
  return q_proj;
}

absl::StatusOr<PreparedLayer> PrepareLayer(const LayerWeights& weights,
                                           const LayerStatistics& stats,
                                           const MlaLayerOptions& options) {
  const RopeSplitShape& rs = options.rope;
  const int64_t width = rs.num_kv_heads * rs.head_dim;  // g·d_h
  const int64_t d = weights.w_k.rows();
  if (weights.w_k.cols() != width || weights.w_v.cols() != width ||
      weights.w_v.rows() != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("deepseek-v3 export: k/v projections are [",
                     weights.w_k.rows(), ", ", weights.w_k.cols(), "] and [",
                     weights.w_v.rows(), ", ", weights.w_v.cols(),
                     "] (activation layout), expected [", d, ", ", width, "]"));
  }
  if (stats.covariance.rows() != d || stats.covariance.cols() != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deepseek-v3 export: covariance is ", stats.covariance.rows(), "x",
        stats.covariance.cols(), ", expected ", d, "x", d));
  }
  if (options.num_heads < 1 || options.num_heads % rs.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deepseek-v3 export: ", options.num_heads,
        " query heads is not a multiple of ", rs.num_kv_heads, " KV heads"));
  }
  const Eigen::MatrixXd& c = stats.covariance;            // [D, D]
  const Eigen::MatrixXd wk = weights.w_k.cast<double>();  // [D, g·d_h]
  const Eigen::MatrixXd wv = weights.w_v.cast<double>();  // [D, g·d_h]

  PreparedLayer out;
  CARE_ASSIGN_OR_RETURN(out.rope,
                        SplitRope(KeyGram(weights, c, options.input_mean), rs));
  const Eigen::MatrixXd nope =
      Eigen::MatrixXd::Identity(width, width) - out.rope.Projector();
  const Eigen::MatrixXd wk_nope = wk * nope;  // [D, g·d_h]

  const AttentionMetric& metric = options.metric;
  if (!metric.empty() &&
      (metric.key_sqrt.rows() != width || metric.value_sqrt.rows() != width)) {
    return absl::InvalidArgumentError(
        absl::StrCat("deepseek-v3 export: attention metric is ",
                     metric.key_sqrt.rows(), " wide, expected ", width));
  }
  // [D, g·d_h] each: the halves as the objective weighs them.
  const Eigen::MatrixXd k_half =
      metric.empty() ? wk_nope : Eigen::MatrixXd(wk_nope * metric.key_sqrt);
  const Eigen::MatrixXd v_half =
      metric.empty() ? wv : Eigen::MatrixXd(wv * metric.value_sqrt);
  // Balance: equal (weighted) calibration energy for the two halves.
  const double ek = Trace(k_half, c), ev = Trace(v_half, c);
  if (options.balance_kv && ek > 0 && ev > 0) {
    out.balance_k = std::sqrt(ev / ek);
  }
  out.joint.resize(d, 2 * width);  // [D, 2·g·d_h]
  out.joint.leftCols(width) = (out.balance_k * k_half).cast<float>();
  out.joint.rightCols(width) = v_half.cast<float>();
  if (!metric.empty()) {
    out.plain.resize(d, 2 * width);  // [D, 2·g·d_h]
    out.plain.leftCols(width) = wk_nope.cast<float>();
    out.plain.rightCols(width) = weights.w_v;
  }

  CARE_ASSIGN_OR_RETURN(Scaling scaling,
                        BuildScaling(stats, options.factorize));
  out.scaling = scaling.info;
  CARE_ASSIGN_OR_RETURN(out.decomposition, Decompose(scaling, out.joint));
  out.q_scale = std::sqrt(static_cast<double>(rs.head_dim + rs.rope_dim) /
                          static_cast<double>(rs.head_dim));
  return out;
}

absl::StatusOr<MlaLayer> TruncatePrepared(const PreparedLayer& prepared,
                                          const LayerWeights& weights,
                                          const Eigen::MatrixXd& covariance,
                                          const MlaLayerOptions& options) {
  const int64_t width = prepared.joint.cols() / 2;
  const int64_t max_rank =
      std::min<int64_t>(prepared.joint.rows(), prepared.joint.cols());
  if (options.kv_lora_rank < 1 || options.kv_lora_rank > max_rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_lora_rank ", options.kv_lora_rank, " is outside [1, ", max_rank,
        "] (min(hidden_size, 2·num_key_value_heads·head_dim))"));
  }
  CARE_ASSIGN_OR_RETURN(
      Factors f,
      Truncate(prepared.decomposition, prepared.joint, options.kv_lora_rank));
  MlaLayer out;
  out.rope = prepared.rope;
  out.scaling = prepared.scaling;
  out.balance_k = prepared.balance_k;
  out.q_scale = prepared.q_scale;
  out.retained_energy = f.retained_energy;
  out.w_down = std::move(f.w_down);  // [D, r]
  if (prepared.plain.size() == 0) {
    out.up_k = f.w_up.leftCols(width) / static_cast<float>(prepared.balance_k);
    out.up_v = f.w_up.rightCols(width);
  } else {
    // Attention objective: the weighted factorization chose the latent; the
    // up-projections are K_nope's and V's regressions on it.
    const Eigen::MatrixXd up =
        RegressUp(out.w_down.cast<double>(), prepared.plain.cast<double>(),
                  covariance, options.factorize.damping);  // [r, 2·g·d_h]
    out.up_k = up.leftCols(width).cast<float>();
    out.up_v = up.rightCols(width).cast<float>();
    if (static_cast<int64_t>(options.value_moments.size()) ==
        options.rope.num_kv_heads) {
      // V under the attended inputs' moments: the latent refined for both
      // halves' metrics (latent_refine.h).
      const Eigen::MatrixXd plain = prepared.plain.cast<double>();
      const Eigen::MatrixXd wk = plain.leftCols(width);   // [D, g·d_h]
      const Eigen::MatrixXd wv = plain.rightCols(width);  // [D, g·d_h]
      LatentRefineInputs ri;
      ri.w_k = &wk;
      ri.w_v = &wv;
      ri.covariance = &covariance;
      ri.value_moments = &options.value_moments;
      ri.metric = &options.metric;
      ri.head_dim = options.rope.head_dim;
      ri.damping = options.factorize.damping;
      ri.rounds = options.latent_refine_rounds;
      const LatentRefineResult rr = RefineLatent(ri, out.w_down.cast<double>());
      out.w_down = rr.w_down.cast<float>();
      out.up_k = rr.up_k.cast<float>();
      out.up_v = rr.up_v.cast<float>();
    }
  }

  // α: the power of two meeting the norm's linear-regime target on the
  // calibration tokens' mean latent energy E[mean(c²)].
  const double r = static_cast<double>(options.kv_lora_rank);
  const double energy = Trace(out.w_down.cast<double>(), covariance) / r;
  out.alpha_log2 = NormAlphaLog2(energy, options.norm_error_target);
  out.norm_error_mean =
      out.alpha() * out.alpha() * energy / (2 * kLatentNormEps);
  const KvErrors e = RelativeErrors(out, weights, covariance);
  out.calib_error_k = e.k;
  out.calib_error_v = e.v;
  return out;
}

int NormAlphaLog2(double energy, double target) {
  int a = kMinAlphaLog2;
  if (energy > 0) {
    a = static_cast<int>(
        std::ceil(-0.5 * std::log2(2 * kLatentNormEps * target / energy)));
  }
  return std::clamp(a, kMinAlphaLog2, kMaxAlphaLog2);
}

absl::StatusOr<MlaLayer> ExportLayer(const LayerWeights& weights,
                                     const LayerStatistics& stats,
                                     const MlaLayerOptions& options) {
  CARE_ASSIGN_OR_RETURN(PreparedLayer p, PrepareLayer(weights, stats, options));
  return TruncatePrepared(p, weights, stats.covariance, options);
}

KvErrors RelativeErrors(const MlaLayer& layer, const LayerWeights& weights,
                        const Eigen::MatrixXd& covariance) {
  const Eigen::MatrixXd wk = weights.w_k.cast<double>();
  const Eigen::MatrixXd wv = weights.w_v.cast<double>();
  const Eigen::MatrixXd down = layer.w_down.cast<double>();
  // Reconstructions in the activation layout, [D, g·d_h].
  const Eigen::MatrixXd k_hat =
      wk * layer.rope.Projector() + down * layer.up_k.cast<double>();
  const Eigen::MatrixXd v_hat = down * layer.up_v.cast<double>();
  auto rel = [&](const Eigen::MatrixXd& w, const Eigen::MatrixXd& w_hat) {
    const double total = Trace(w, covariance);
    if (!(total > 0)) return 0.0;
    return std::max(Trace(w - w_hat, covariance), 0.0) / total;
  };
  return {rel(wk, k_hat), rel(wv, v_hat)};
}

void MeasureNormError(const Eigen::Ref<const MatrixRM>& x, MlaLayer& layer) {
  if (x.rows() == 0 || layer.w_down.cols() == 0) return;
  const Eigen::MatrixXd c = x.cast<double>() * layer.w_down.cast<double>();
  // The bias channel adds a constant 1 to every token's latent.
  const double constant = layer.bias_channel ? 1.0 : 0.0;
  const double worst = (c.rowwise().squaredNorm().maxCoeff() + constant) /
                       static_cast<double>(layer.kv_lora_rank());
  const double a2 = layer.alpha() * layer.alpha();
  layer.norm_error_max =
      std::max(layer.norm_error_max, a2 * worst / (2 * kLatentNormEps));
}

}  // namespace care::convert::mla
