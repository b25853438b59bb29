#include "care/convert/mla_export/fit_layer.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/convert/covariance.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/attended_inputs.h"
#include "care/convert/mla_export/latent_objective.h"
#include "care/convert/mla_export/mla_bias.h"
#include "care/convert/mla_export/nope_correction.h"
#include "care/convert/mla_export/nope_scale.h"
#include "care/convert/mla_export/o_proj_refit.h"
#include "care/convert/mla_export/qk_norm_fold.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

// Calibration tokens the attended-input moments read at most (the first
// ones): 32 windows of 256 at the NoPE scale's span.
constexpr int64_t kAttendedTokens = 8192;

MlaLayerReport LayerReport(const MlaLayer& layer, const KvErrors& heldout) {
  MlaLayerReport r;
  r.alpha_log2 = layer.alpha_log2;
  r.rope_energy = layer.rope.rope_energy;
  r.balance_k = layer.balance_k;
  r.retained_energy = layer.retained_energy;
  r.calib_error_k = layer.calib_error_k;
  r.calib_error_v = layer.calib_error_v;
  r.heldout_error_k = heldout.k;
  r.heldout_error_v = heldout.v;
  r.norm_error_mean = layer.norm_error_mean;
  r.norm_error_max = layer.norm_error_max;
  r.nope_dropped_error = layer.nope_dropped_error;
  r.nope_corrected_error = layer.nope_correction.empty()
                               ? layer.nope_dropped_error
                               : layer.nope_corrected_error;
  r.note = layer.scaling.note;
  return r;
}

absl::StatusOr<CalibratedLayer> Fit(
    const LayerFitContext& ctx, const std::vector<CandidateShape>& candidates,
    int64_t l, const Eigen::Ref<const MatrixRM>& x, int64_t cal_tokens) {
  const ModelConfig& config = *ctx.config;
  const int64_t d = config.hidden_size;
  const int64_t bias_channels = config.attention_bias ? 1 : 0;
  const int64_t full_rank = std::min<int64_t>(d, 2 * config.kv_width());
  CovarianceAccumulator cal(d), held(d);
  CARE_RETURN_IF_ERROR(cal.Add(x.topRows(cal_tokens)));
  CARE_RETURN_IF_ERROR(held.Add(x.bottomRows(x.rows() - cal_tokens)));
  const LayerStatistics stats{cal.Covariance(), cal.MeanAbs(), cal.tokens()};
  const Eigen::MatrixXd held_c = held.Covariance();
  // [D] the calibration inputs' mean: the biased keys' Gram needs it.
  Eigen::VectorXd mean;
  if (config.attention_bias) {
    mean = x.topRows(cal_tokens).cast<double>().colwise().mean().transpose();
  }
  CARE_ASSIGN_OR_RETURN(LayerWeights w,
                        LoadLayerWeights(config, *ctx.weights, l));
  const LayerWeights source_w = w;  // the o_proj refit applies the folds
  MlaLayer folds;  // Qwen3: q_norm/k_norm folded (qk_norm_fold.h)
  const int64_t qrows = config.num_attention_heads * config.head_dim;
  CARE_ASSIGN_OR_RETURN(
      Tensor q_tensor,
      LoadChecked(*ctx.weights, io::names::QProj(l), {qrows, d}));
  MatrixRM w_q = q_tensor.matrix();  // [n_h·d_h, D]
  if (config.qk_norm) {
    CARE_ASSIGN_OR_RETURN(
        QkNormFold f,
        FitQkNormFold(config, *ctx.weights, l, x.topRows(cal_tokens),
                      UsesRegressionFold(ctx.mla, ctx.factorize.method,
                                         config.attention_bias)));
    folds.q_fold = std::move(f.q);
    folds.k_fold = std::move(f.k);
    folds.q_regression = std::move(f.q_proj);
    folds.k_regression = std::move(f.k_proj);
    w = FoldedWeights(w, folds);
    w_q = FoldedQProj(w_q, folds);
  }
  // The attention objective (latent_objective.h) needs o_proj.
  const bool attention =
      ctx.mla.latent_objective == LatentObjective::kAttention &&
      ctx.factorize.method == Method::kCare;
  MatrixRM o_proj;  // [D, n_h·d_h]
  if (attention) {
    CARE_ASSIGN_OR_RETURN(
        Tensor o_tensor,
        LoadChecked(*ctx.weights, io::names::OProj(l), {d, qrows}));
    o_proj = o_tensor.matrix();
  }
  CalibratedLayer out;
  // Inputs of the fits that recompute the source's attention on windows.
  auto window_inputs = [&](const RopeSplit* rope, int64_t seq_len) {
    NopeCorrectionInputs in;
    in.w_q = &w_q;
    in.w_k = &w.w_k;
    in.rope = rope;
    in.inv_freq = ctx.freqs.inv_freq;
    in.num_heads = config.num_attention_heads;
    in.seq_len = seq_len;
    return in;
  };
  // The NoPE scale's long windows (consecutive calibration windows as one),
  // on which V's metric and the o_proj refit read the source's attention.
  const int64_t long_window = NopeScaleWindow(
      std::max<int64_t>(ctx.mla.nope_scale_span, ctx.calib_seq_len),
      config.max_position_embeddings, ctx.calib_seq_len, cal_tokens);
  // V's regression metric (attended_inputs.h): candidate-independent.
  std::vector<Eigen::MatrixXd> value_moments;
  const bool refines =
      std::any_of(candidates.begin(), candidates.end(),
                  [](const CandidateShape& c) { return c.latent_refine > 0; });
  if (attention && refines) {
    RopeSplit shape_only;
    shape_only.shape = {config.num_key_value_heads, config.head_dim, 0, 1};
    const NopeCorrectionInputs ai = window_inputs(&shape_only, long_window);
    const int64_t rows =
        std::max(ai.seq_len, std::min(cal_tokens, kAttendedTokens) /
                                 ai.seq_len * ai.seq_len);
    CARE_ASSIGN_OR_RETURN(value_moments,
                          AttendedInputMoments(ai, x.topRows(rows)));
  }
  // The o_proj refit (o_proj_refit.h) of the last fitted candidate, on the
  // long windows, checked on the held-out rows (consecutive text).
  const int64_t refit_rows =
      std::max(long_window, std::min(cal_tokens, kOProjRefitTokens) /
                                long_window * long_window);
  const int64_t refit_held =
      std::min(x.rows() - cal_tokens, kOProjRefitTokens) / long_window *
      long_window;
  const auto x_refit = x.topRows(refit_rows);
  const auto x_refit_held = x.middleRows(cal_tokens, refit_held);
  std::optional<OProjRefitTargets> refit_targets;
  auto refit_last = [&]() -> absl::Status {
    if (!refit_targets) {
      CARE_ASSIGN_OR_RETURN(
          refit_targets, PrepareOProjRefit(config, *ctx.weights, l, long_window,
                                           x_refit, x_refit_held));
    }
    MlaLayer& layer = out.layers.back();
    CARE_ASSIGN_OR_RETURN(
        OProjRefit r,
        RefitOProj(*refit_targets, x_refit, x_refit_held, l, layer, q_tensor,
                   source_w, config.num_attention_heads));
    layer.o_proj = std::move(r.o_proj);
    MlaLayerReport& report = out.reports.back();
    report.o_proj_refit = layer.o_proj.size() > 0;
    report.o_proj_error_before = r.heldout_before;
    report.o_proj_error_after = r.heldout_after;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < candidates.size(); ++i) {
    const CandidateShape& cand = candidates[i];
    if (i > 0 && IsRefitTwin(candidates[i - 1], cand)) {
      // `auto`'s twin: the previous candidate's fit, then the refit.
      out.layers.push_back(out.layers.back());
      out.rope_only.push_back(out.rope_only.back());
      out.reports.push_back(out.reports.back());
      CARE_RETURN_IF_ERROR(refit_last());
      continue;
    }
    MlaLayerOptions mo;
    mo.num_heads = config.num_attention_heads;
    mo.rope = {config.num_key_value_heads, config.head_dim, cand.rope_dim,
               cand.freqfold};
    mo.kv_lora_rank = cand.kv_lora_rank - bias_channels;
    mo.input_mean = mean;
    mo.factorize = ctx.factorize;
    mo.balance_kv = ctx.mla.balance_kv;
    // The rope split first: the NoPE correction needs it, and the attention
    // objective weighs the keys by the corrected queries (PrepareLayer
    // derives the same split from the same Gram).
    CARE_ASSIGN_OR_RETURN(
        RopeSplit split,
        SplitRope(KeyGram(w, stats.covariance, mean), mo.rope));
    NopeCorrection nc;
    if (ctx.mla.nope_correction) {
      const NopeCorrectionInputs ni = window_inputs(&split, ctx.calib_seq_len);
      CARE_ASSIGN_OR_RETURN(nc, FitNopeCorrection(ni, x.topRows(cal_tokens)));
      if (ctx.mla.nope_scale_span > 0) {
        // The per-head scale on longer windows: consecutive calibration
        // windows renumbered as one (nope_scale.h).
        NopeCorrectionInputs li = ni;
        li.seq_len = NopeScaleWindow(ctx.mla.nope_scale_span,
                                     config.max_position_embeddings,
                                     ctx.calib_seq_len, cal_tokens);
        const int64_t rows =
            std::min(cal_tokens, kNopeScaleTokens) / li.seq_len * li.seq_len;
        CARE_ASSIGN_OR_RETURN(NopeScale scale,
                              FitNopeScale(li, nc.m, x.topRows(rows)));
        ApplyNopeScale(scale, config.head_dim, nc.m);
      }
    }
    if (attention) {
      CARE_ASSIGN_OR_RETURN(
          mo.metric,
          BuildAttentionMetric(
              CorrectedQueryProjection(nc, config.head_dim, w_q), o_proj,
              stats.covariance, config.num_key_value_heads, config.head_dim));
    }
    if (!mo.metric.empty() && cand.latent_refine > 0) {
      mo.value_moments = value_moments;
      mo.latent_refine_rounds = static_cast<int>(cand.latent_refine);
    }
    CARE_ASSIGN_OR_RETURN(PreparedLayer prepared, PrepareLayer(w, stats, mo));
    CARE_ASSIGN_OR_RETURN(MlaLayer layer,
                          TruncatePrepared(prepared, w, stats.covariance, mo));
    mo.kv_lora_rank = full_rank;
    CARE_ASSIGN_OR_RETURN(MlaLayer full,
                          TruncatePrepared(prepared, w, stats.covariance, mo));
    if (config.attention_bias) {
      AddBiasChannel(stats.covariance, mo.norm_error_target, layer);
      AddBiasChannel(stats.covariance, mo.norm_error_target, full);
    }
    layer.q_fold = full.q_fold = folds.q_fold;
    layer.k_fold = full.k_fold = folds.k_fold;
    layer.q_regression = full.q_regression = folds.q_regression;
    layer.k_regression = full.k_regression = folds.k_regression;
    if (ctx.mla.nope_correction) {
      layer.nope_correction = full.nope_correction = nc.m;
      layer.nope_dropped_error = nc.dropped_error;
      layer.nope_corrected_error = nc.corrected_error;
    }
    MeasureNormError(x, layer);
    MeasureNormError(x, full);
    out.reports.push_back(LayerReport(layer, RelativeErrors(layer, w, held_c)));
    out.layers.push_back(std::move(layer));
    out.rope_only.push_back(std::move(full));
    if (cand.o_proj_refit) CARE_RETURN_IF_ERROR(refit_last());
  }
  return out;
}

}  // namespace

bool IsRefitTwin(const CandidateShape& a, const CandidateShape& b) {
  return !a.o_proj_refit && b.o_proj_refit && a.rope_dim == b.rope_dim &&
         a.freqfold == b.freqfold && a.kv_lora_rank == b.kv_lora_rank &&
         a.latent_refine == b.latent_refine;
}

bool UsesRegressionFold(const MlaExportOptions& options, Method method,
                        bool attention_bias) {
  // The regression replaces whole projections; a bias would need its own
  // column (no per-head-norm model has one).
  if (attention_bias) return false;
  switch (options.qk_norm_fold) {
    case QkNormFoldMode::kScalar:
      return false;
    case QkNormFoldMode::kRegression:
      return true;
    case QkNormFoldMode::kAuto:
      break;
  }
  return MethodUsesData(method);
}

absl::StatusOr<CalibratedLayer> FitLayerCandidates(
    const LayerFitContext& ctx, const std::vector<CandidateShape>& candidates,
    int64_t l, const Eigen::Ref<const MatrixRM>& x, int64_t cal_tokens) {
  absl::StatusOr<CalibratedLayer> out = Fit(ctx, candidates, l, x, cal_tokens);
  if (!out.ok()) return Annotate(out.status(), absl::StrCat("layer ", l));
  return out;
}

}  // namespace care::convert::mla
