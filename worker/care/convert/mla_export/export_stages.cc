#include "care/convert/mla_export/export_stages.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/candidate_scoring.h"
#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/mla_export/fold_only.h"
#include "care/convert/mla_export/layer_reports.h"
#include "care/convert/mla_export/mla_bias.h"
#include "care/convert/mla_export/mla_config.h"
#include "care/convert/mla_export/mla_resume.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/convert/report_html.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/tensor_names.h"

namespace care::convert::stage {
namespace {

// Numbers cached per token per layer that the budget allows:
// floor((1 − F)·2·g·d_h) for --kv-save F, 2·r for --rank r.
int64_t LayerWidth(const Budget& budget, const ModelConfig& c) {
  const int64_t gqa = 2 * c.kv_width();
  if (budget.kind == Budget::Kind::kRank) return 2 * budget.rank;
  return static_cast<int64_t>(
      std::floor((1 - budget.kv_save) * static_cast<double>(gqa) + 1e-9));
}

engine::TokenWindows Batch(const CalibrationWindows& w) {
  engine::TokenWindows all = w.calib;
  all.ids.insert(all.ids.end(), w.heldout.ids.begin(), w.heldout.ids.end());
  all.num_windows += w.heldout.num_windows;
  return all;
}

std::vector<int32_t> BatchTargets(const CalibrationWindows& w) {
  std::vector<int32_t> t(w.calib.tokens(), -1);
  t.insert(t.end(), w.heldout_targets.begin(), w.heldout_targets.end());
  return t;
}

// Latent channels the q/k/v biases take (mla_bias.h).
int64_t BiasChannels(const ModelConfig& c) { return c.attention_bias ? 1 : 0; }

mla::ExportMetadata Metadata(const ConversionReport& report) {
  return {report.method, report.budget, report.damping};
}

// The engine's view of an export: its config.json parsed like any model's.
absl::StatusOr<ModelConfig> ExportModelConfig(
    const ModelConfig& source, const std::vector<mla::MlaLayer>& layers,
    const mla::ExportMetadata& meta) {
  CARE_ASSIGN_OR_RETURN(nlohmann::json j,
                        mla::ExportConfigJson(source, layers, meta));
  return ParseModelConfig(j.dump(), "deepseek-v3 export config.json",
                          engine::Families());
}

// An export as the engine runs it: config + tensors over the source.
struct ExportView {
  ModelConfig config;
  std::unique_ptr<mla::MlaTensorSource> weights;
};

absl::StatusOr<ExportView> View(const Inputs& in,
                                const std::vector<mla::MlaLayer>& layers,
                                const mla::ExportMetadata& meta) {
  ExportView v;
  CARE_ASSIGN_OR_RETURN(v.config, ExportModelConfig(in.config(), layers, meta));
  v.weights =
      std::make_unique<mla::MlaTensorSource>(in.weights(), in.config(), layers);
  return v;
}

engine::LayerHooks ProgressHooks(const LayerCallback& cb) {
  engine::LayerHooks hooks;
  hooks.on_layer_output = [cb](int64_t l, const compute::Matrix&) {
    return cb(l);
  };
  return hooks;
}

// The held-out slice as windows of up to kScoringTokens tokens. The slice's
// windows are consecutive (ChunkEvaluationWindows), so whole groups of them
// are regrouped: a rope split's loss grows with the attended distance, and
// windows as short as the calibration ones (32 tokens) hide it.
constexpr int64_t kScoringTokens = 256;
struct Scoring {
  engine::TokenWindows windows;
  std::vector<int32_t> targets;
};
Scoring LongHeldout(const CalibrationWindows& w) {
  const engine::TokenWindows& h = w.heldout;
  const int64_t per = std::clamp<int64_t>(kScoringTokens / h.seq_len, 1,
                                          std::max<int64_t>(h.num_windows, 1));
  Scoring s;
  s.windows.seq_len = per * h.seq_len;
  s.windows.num_windows = h.num_windows / per;
  s.windows.ids.assign(h.ids.begin(), h.ids.begin() + s.windows.tokens());
  s.targets = NextTokenTargets(s.windows);
  return s;
}

// What a saved layer must have been fitted with to be reused (mla_resume.h):
// the candidates and the options that shape a layer's fit.
std::string ResumeKey(const ConvertOptions& options, const ModelConfig& c,
                      const std::vector<mla::CandidateShape>& shapes) {
  std::string key = absl::StrCat(
      "balance ", options.mla.balance_kv, " nope ", options.mla.nope_correction,
      " scale ", options.mla.nope_scale_span, " objective ",
      LatentObjectiveName(options.mla.latent_objective), " qk-fold ",
      mla::UsesRegressionFold(options.mla, options.method, c.attention_bias),
      " bias ", c.attention_bias, " candidates");
  for (const mla::CandidateShape& s : shapes) {
    absl::StrAppend(&key, " ", s.rope_dim, "/", s.freqfold, "/", s.kv_lora_rank,
                    "/", s.latent_refine, "/", s.o_proj_refit);
  }
  return key;
}

PerplexityReport ToReport(const engine::PerplexityResult& r) {
  return {r.ppl, r.mean_nll, r.windows, r.predictions};
}

// The shapes of the fit's candidates, in order.
std::vector<mla::CandidateShape> Shapes(const MlaFit& fit) {
  std::vector<mla::CandidateShape> shapes;
  for (const MlaCandidate& c : fit.candidates) {
    shapes.push_back({c.rope_dim, c.freqfold, c.kv_lora_rank, c.latent_refine,
                      c.o_proj_refit});
  }
  return shapes;
}

absl::StatusOr<mla::LayerFitContext> FitContext(const ConvertOptions& options,
                                                const Inputs& in) {
  mla::LayerFitContext ctx;
  ctx.config = &in.config();
  ctx.weights = &in.weights();
  ctx.factorize = in.factorize;
  ctx.mla = options.mla;
  ctx.calib_seq_len = in.windows.calib.seq_len;
  CARE_ASSIGN_OR_RETURN(ctx.freqs, engine::ComputeRopeFrequencies(in.config()));
  return ctx;
}

using TakeLayer = std::function<absl::Status(int64_t, mla::CalibratedLayer)>;

// One pass of the original model over the calibration and held-out windows
// (from `start` when resuming; the layers below it are the caller's),
// fitting `shapes` at each layer's k/v input and handing the fits to
// `take`. With `resume`, each layer and the snapshots are saved. Returns
// the original model's held-out NLL.
absl::StatusOr<engine::NllSum> FitPass(
    const Inputs& in, const mla::LayerFitContext& ctx,
    const std::vector<mla::CandidateShape>& shapes,
    std::optional<SavedHidden> start, ResumeState* resume,
    const std::string& key, const LayerCallback& after, const TakeLayer& take) {
  const int64_t L = in.num_layers();
  const int64_t cal_tokens = in.windows.calib.tokens();
  CARE_ASSIGN_OR_RETURN(
      auto fwd, engine::LayerwiseForward::Create(in.config(), in.weights(),
                                                 Batch(in.windows), in.engine));
  if (start) {
    CARE_RETURN_IF_ERROR(fwd->SeekLayer(start->next_layer, start->hidden));
    start.reset();
  }
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t l,
                          const compute::Matrix& xm) -> absl::Status {
    // x: [tokens, D], calibration rows first, held-out rows after.
    CARE_ASSIGN_OR_RETURN(MatrixRM x,
                          engine::DownloadMatrix(fwd->backend(), xm));
    CARE_ASSIGN_OR_RETURN(
        mla::CalibratedLayer fits,
        mla::FitLayerCandidates(ctx, shapes, l, x, cal_tokens));
    if (resume != nullptr) mla::SaveCalibratedLayer(*resume, l, key, fits);
    return take(l, std::move(fits));
  };
  hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
    return after(l);
  };
  if (resume != nullptr) {
    AddHiddenSnapshots(hooks, *resume, L, fwd->backend());
  }
  CARE_RETURN_IF_ERROR(fwd->RunLayers(L, hooks));
  CARE_ASSIGN_OR_RETURN(engine::NllSum nll,
                        fwd->ScoreTargets(BatchTargets(in.windows)));
  if (resume != nullptr) mla::SavePassDone(*resume, nll);
  return nll;
}

// The chosen candidate's layers, which `auto` did not keep: from the resume
// state when every layer is there, else refitted in one more pass (the
// same inputs and code, so the same bits the candidate was scored with).
absl::Status RefitChosen(const ConvertOptions& options, const Inputs& in,
                         MlaFit& fit, StageProgress& progress) {
  const int64_t L = in.num_layers();
  MlaCandidate& chosen = fit.candidates[fit.chosen];
  chosen.layers.assign(L, {});
  chosen.rope_only.assign(L, {});
  const std::vector<mla::CandidateShape> all = Shapes(fit);
  if (in.resume != nullptr) {
    const std::string key = ResumeKey(options, in.config(), all);
    int64_t l = 0;
    for (; l < L; ++l) {
      std::optional<mla::CalibratedLayer> fits =
          mla::LoadCalibratedLayer(*in.resume, l, key, all.size());
      if (!fits) break;
      chosen.layers[l] = std::move(fits->layers[fit.chosen]);
      chosen.rope_only[l] = std::move(fits->rope_only[fit.chosen]);
    }
    if (l == L) return absl::OkStatus();
  }
  CARE_ASSIGN_OR_RETURN(const mla::LayerFitContext ctx,
                        FitContext(options, in));
  auto take = [&](int64_t l, mla::CalibratedLayer fits) {
    chosen.layers[l] = std::move(fits.layers[0]);
    chosen.rope_only[l] = std::move(fits.rope_only[0]);
    return absl::OkStatus();
  };
  return FitPass(in, ctx, {all[fit.chosen]}, std::nullopt, nullptr, "",
                 progress.Layers("allocate", L), take)
      .status();
}

}  // namespace

absl::StatusOr<std::vector<MlaCandidate>> MlaCandidates(
    const ConvertOptions& options, const ModelConfig& c) {
  CARE_RETURN_IF_ERROR(mla::CheckExportableRope(c));
  if (c.num_experts > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--layout deepseek-v3: ", c.model_type,
        " has a sparse MoE MLP, which DeepSeek-V3's MoE cannot represent "
        "(dense models only)"));
  }
  if (options.output_dtype == io::DType::kF16) {
    return absl::InvalidArgumentError(
        "--dtype f16 cannot hold the deepseek-v3 layout: kv_a_layernorm's "
        "linear regime scales the latent by a power of two near 2^-20, "
        "below f16's range (use bf16 or f32)");
  }
  const MlaExportOptions& o = options.mla;
  const int64_t dh = c.head_dim;
  // q/k/v biases cost one latent channel (mla_bias.h).
  const int64_t extra = BiasChannels(c);
  const int64_t max_rank =
      std::min<int64_t>(c.hidden_size, 2 * c.kv_width()) + extra;
  // The latent refinement needs care's attention objective (fit_layer.cc);
  // `auto` scores each split without it first, so a tie keeps the plain fit.
  std::vector<int64_t> refines = {0};
  if (options.method == Method::kCare &&
      o.latent_objective == LatentObjective::kAttention &&
      o.latent_refine > 0) {
    if (o.latent_refine_auto) {
      refines.push_back(o.latent_refine);
    } else {
      refines = {o.latent_refine};
    }
  }
  // The o_proj refit needs the attention forward without a bias channel
  // (o_proj_refit.h); `auto` scores each split without it first.
  std::vector<bool> refits = {false};
  if (options.method == Method::kCare &&
      o.o_proj_refit != OProjRefitMode::kOff) {
    if (c.attention_bias) {
      if (o.o_proj_refit == OProjRefitMode::kOn) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--o-proj-refit on: ", c.model_type,
            " has q/k/v biases, which the refit does not support yet (use "
            "auto or off)"));
      }
    } else if (o.o_proj_refit == OProjRefitMode::kAuto) {
      refits.push_back(true);
    } else {
      refits = {true};
    }
  }
  std::vector<int64_t> ropes;
  if (o.rope_dim > 0) {
    ropes = {o.rope_dim};
  } else {
    for (int64_t r : {dh, dh / 2, dh / 4}) {
      if (r >= 2 && r % 2 == 0) ropes.push_back(r);
    }
  }
  std::vector<MlaCandidate> out;
  for (int64_t rope : ropes) {
    std::vector<int64_t> folds;
    if (o.freqfold > 0) {
      folds = {o.freqfold};
    } else {
      for (int64_t k : {1, 2, 4}) {
        if ((rope / 2) % k == 0) folds.push_back(k);
      }
    }
    for (int64_t k : folds) {
      const mla::RopeSplitShape shape{c.num_key_value_heads, dh, rope, k};
      if (absl::Status s = mla::CheckRopeSplitShape(shape); !s.ok()) {
        if (o.rope_dim > 0 && o.freqfold > 0) return s;
        continue;
      }
      const int64_t rank = o.kv_lora_rank > 0
                               ? o.kv_lora_rank
                               : LayerWidth(options.budget, c) - rope;
      if (rank < 1 + extra || rank > max_rank) {
        if (o.rope_dim > 0 || o.kv_lora_rank > 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "kv_lora_rank ", rank, " (with rope_dim ", rope, ") is outside [",
              1 + extra, ", ", max_rank, "]",
              extra > 0 ? " (one channel carries the q/k/v biases)" : "",
              ": the budget leaves kv_lora_rank + rope_dim = ",
              LayerWidth(options.budget, c),
              " numbers per token per layer (2·g·d_h = ", 2 * c.kv_width(),
              ")"));
        }
        continue;
      }
      for (int64_t rounds : refines) {
        for (bool refit : refits) {
          MlaCandidate cand;
          cand.rope_dim = rope;
          cand.freqfold = k;
          cand.kv_lora_rank = rank;
          cand.latent_refine = rounds;
          cand.o_proj_refit = refit;
          out.push_back(std::move(cand));
        }
      }
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no (rope_dim, freqfold) fits: head_dim ", dh, ", the budget leaves ",
        LayerWidth(options.budget, c), " numbers per token per layer"));
  }
  return out;
}

absl::StatusOr<MlaFit> MlaCalibrate(const ConvertOptions& options,
                                    const Inputs& in, StageProgress& progress,
                                    ConversionReport* report) {
  StageTimer timer;
  const ModelConfig& config = in.config();
  const int64_t L = in.num_layers();
  MlaFit fit;
  CARE_ASSIGN_OR_RETURN(fit.candidates, MlaCandidates(options, config));
  // One candidate keeps its layers. With several (`auto`) each is scored
  // as the pass runs and only its reports are kept; MlaChoose refits the
  // winner (memory bounded by one layer per candidate, not L).
  const bool keep_layers = fit.candidates.size() == 1;
  for (MlaCandidate& cand : fit.candidates) {
    if (keep_layers) {
      cand.layers.resize(L);
      cand.rope_only.resize(L);
    }
    cand.reports.resize(L);
  }
  report->layout = OutputLayoutName(OutputLayout::kDeepseekV3);
  report->architecture = "DeepseekV3ForCausalLM";
  report->allocation = "uniform";
  if (options.mla.kv_lora_rank > 0) {
    report->budget = absl::StrCat("kv_lora_rank=", options.mla.kv_lora_rank);
  }
  report->budget_width =
      L * (options.mla.kv_lora_rank > 0
               ? options.mla.kv_lora_rank + fit.candidates[0].rope_dim
               : LayerWidth(options.budget, config));

  CARE_ASSIGN_OR_RETURN(const mla::LayerFitContext ctx,
                        FitContext(options, in));
  const std::vector<mla::CandidateShape> shapes = Shapes(fit);
  const Scoring scoring = LongHeldout(in.windows);
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<mla::CandidateScorer> scorer,
                        mla::CandidateScorer::Create(
                            config, in.weights(), shapes, scoring.windows,
                            in.engine, Metadata(*report)));
  auto take = [&](int64_t l, mla::CalibratedLayer fits) -> absl::Status {
    CARE_RETURN_IF_ERROR(scorer->AddLayer(l, fits));
    for (size_t i = 0; i < fit.candidates.size(); ++i) {
      MlaCandidate& cand = fit.candidates[i];
      cand.reports[l] = std::move(fits.reports[i]);
      if (keep_layers) {
        cand.layers[l] = std::move(fits.layers[i]);
        cand.rope_only[l] = std::move(fits.rope_only[i]);
      }
    }
    return absl::OkStatus();
  };
  progress.Begin("calibrate");
  ResumeState* resume = in.resume.get();
  const std::string key = ResumeKey(options, config, shapes);
  mla::RestoredPass restored;
  if (resume != nullptr) {
    restored = mla::RestorePass(
        *resume, key, shapes.size(), L,
        in.windows.calib.tokens() + in.windows.heldout.tokens(),
        config.hidden_size);
  }
  for (int64_t l = 0; l < restored.layers; ++l) {
    std::optional<mla::CalibratedLayer> fits =
        mla::LoadCalibratedLayer(*resume, l, key, shapes.size());
    if (!fits) {
      return absl::DataLossError(absl::StrCat("resume state ", resume->dir(),
                                              ": layer ", l, " vanished"));
    }
    CARE_RETURN_IF_ERROR(take(l, *std::move(fits)));
  }
  report->resumed_layers = restored.layers;
  progress.set_resumed_layers(restored.layers);
  engine::NllSum nll;
  if (restored.heldout_original) {
    nll = *restored.heldout_original;
    CARE_RETURN_IF_ERROR(progress.Step("calibrate", L, L));
  } else {
    CARE_ASSIGN_OR_RETURN(
        nll, FitPass(in, ctx, shapes, std::move(restored.hidden), resume, key,
                     progress.Layers("calibrate", L), take));
  }
  CARE_ASSIGN_OR_RETURN(std::vector<mla::CandidateScore> scores,
                        scorer->Scores(scoring.targets));
  for (size_t i = 0; i < fit.candidates.size(); ++i) {
    fit.candidates[i].heldout_nll = scores[i].heldout_nll;
    fit.candidates[i].heldout_nll_partial_rope =
        scores[i].heldout_nll_partial_rope;
  }
  report->heldout_nll_original = nll.mean();
  timer.Done("calibrate", report);
  return fit;
}

absl::Status MlaChoose(const ConvertOptions& options, const Inputs& in,
                       MlaFit& fit, StageProgress& progress,
                       ConversionReport* report) {
  StageTimer timer;
  const int64_t L = in.num_layers();
  const int64_t n = static_cast<int64_t>(fit.candidates.size());
  progress.Begin("allocate");
  const Scoring scoring = LongHeldout(in.windows);
  MlaExportReport mr;
  mr.scoring_seq_len = scoring.windows.seq_len;
  mr.scoring_windows = scoring.windows.num_windows;
  {
    // The original model on the same scoring windows, for comparison.
    CARE_ASSIGN_OR_RETURN(
        auto fwd, engine::LayerwiseForward::Create(in.config(), in.weights(),
                                                   scoring.windows, in.engine));
    CARE_RETURN_IF_ERROR(fwd->RunLayers(L));
    CARE_ASSIGN_OR_RETURN(engine::NllSum o, fwd->ScoreTargets(scoring.targets));
    mr.heldout_nll_original = o.mean();
  }
  // Scored during the calibration pass (candidate_scoring.h).
  double best = 0;
  for (int64_t i = 0; i < n; ++i) {
    const MlaCandidate& cand = fit.candidates[i];
    MlaCandidateReport cr;
    cr.rope_dim = cand.rope_dim;
    cr.freqfold = cand.freqfold;
    cr.kv_lora_rank = cand.kv_lora_rank;
    cr.latent_refine = cand.latent_refine;
    cr.o_proj_refit = cand.o_proj_refit;
    cr.heldout_nll = cand.heldout_nll;
    cr.heldout_nll_partial_rope = cand.heldout_nll_partial_rope;
    if (i == 0 || cr.heldout_nll < best) {
      best = cr.heldout_nll;
      fit.chosen = i;
    }
    mr.candidates.push_back(cr);
  }
  mr.candidates[fit.chosen].chosen = true;
  if (fit.best().layers.empty()) {
    CARE_RETURN_IF_ERROR(RefitChosen(options, in, fit, progress));
  }
  const MlaCandidate& c = fit.best();
  const ModelConfig& config = in.config();
  mr.rope_dim = c.rope_dim;
  mr.freqfold = c.freqfold;
  mr.kv_lora_rank = c.kv_lora_rank;
  mr.rope_dim_auto = options.mla.rope_dim == 0;
  mr.freqfold_auto = options.mla.freqfold == 0;
  mr.latent_refine = c.latent_refine;
  mr.latent_refine_auto = std::any_of(
      fit.candidates.begin(), fit.candidates.end(), [&](const MlaCandidate& o) {
        return o.latent_refine != c.latent_refine;
      });
  mr.o_proj_refit = c.o_proj_refit;
  mr.o_proj_refit_auto = std::any_of(
      fit.candidates.begin(), fit.candidates.end(),
      [&](const MlaCandidate& o) { return o.o_proj_refit != c.o_proj_refit; });
  mr.balance_kv = options.mla.balance_kv;
  mr.nope_correction = options.mla.nope_correction;
  mr.nope_scale_span =
      options.mla.nope_correction ? options.mla.nope_scale_span : 0;
  // The objective the joint latent minimised (care's option; pca: the
  // activation error; svd: none).
  mr.latent_objective =
      options.method == Method::kCare
          ? LatentObjectiveName(options.mla.latent_objective)
          : (options.method == Method::kSvd ? "weights" : "activation");
  if (config.qk_norm) {
    mr.qk_norm_fold = mla::UsesRegressionFold(options.mla, options.method,
                                              config.attention_bias)
                          ? "regression"
                          : "scalar";
  }
  mr.rope_theta = mla::ExportRopeTheta(config, c.rope_dim);
  mr.kv_width_per_layer_before = 2 * config.kv_width();
  mr.kv_width_per_layer_after = c.kv_lora_rank + c.rope_dim;
  mr.heldout_nll_partial_rope =
      mr.candidates[fit.chosen].heldout_nll_partial_rope;
  mr.layers = c.reports;
  report->layers = MlaLayerReports(mr);
  report->allocation_chosen = absl::StrCat(
      "rope", c.rope_dim, "-freqfold", c.freqfold,
      c.latent_refine > 0 ? absl::StrCat("-refine", c.latent_refine)
                          : std::string(),
      c.o_proj_refit ? "-oprojrefit" : "");
  // Both held-out numbers on the scoring windows.
  report->heldout_nll_original = mr.heldout_nll_original;
  report->heldout_nll_converted = best;
  report->kv_width_after = L * mr.kv_width_per_layer_after;
  report->deepseek_v3 = std::move(mr);
  timer.Done("allocate", report);
  return absl::OkStatus();
}

absl::Status MlaEvaluate(const ConvertOptions& options, const Inputs& in,
                         const MlaFit& fit, StageProgress& progress,
                         ConversionReport* report) {
  (void)options;
  StageTimer timer;
  if (in.eval) {
    const int64_t L = in.num_layers();
    const mla::ExportMetadata meta = Metadata(*report);
    progress.Begin("evaluate");
    CARE_ASSIGN_OR_RETURN(
        engine::PerplexityResult orig,
        engine::EvaluatePerplexity(
            in.config(), in.weights(), *in.eval, in.engine,
            ProgressHooks(progress.Layers("evaluate", L, 0, 3))));
    CARE_ASSIGN_OR_RETURN(ExportView rope,
                          View(in, fit.best().rope_only, meta));
    CARE_ASSIGN_OR_RETURN(
        engine::PerplexityResult partial,
        engine::EvaluatePerplexity(
            rope.config, *rope.weights, *in.eval, in.engine,
            ProgressHooks(progress.Layers("evaluate", L, 1, 3))));
    CARE_ASSIGN_OR_RETURN(ExportView conv, View(in, fit.best().layers, meta));
    CARE_ASSIGN_OR_RETURN(
        engine::PerplexityResult converted,
        engine::EvaluatePerplexity(
            conv.config, *conv.weights, *in.eval, in.engine,
            ProgressHooks(progress.Layers("evaluate", L, 2, 3))));
    report->original = ToReport(orig);
    report->converted = ToReport(converted);
    if (report->deepseek_v3)
      report->deepseek_v3->eval_ppl_partial_rope = partial.ppl;
    if (in.config().qk_norm && report->deepseek_v3) {
      // Qwen3: the q/k norm fold alone, RoPE whole (fold_only.h).
      const ModelConfig folded = mla::FoldOnlyConfig(in.config());
      const mla::FoldOnlySource source(in.weights(), folded, fit.best().layers);
      CARE_ASSIGN_OR_RETURN(
          engine::PerplexityResult fold,
          engine::EvaluatePerplexity(folded, source, *in.eval, in.engine));
      report->deepseek_v3->eval_ppl_qk_norm_fold = fold.ppl;
    }
  }
  timer.Done("evaluate", report);
  return absl::OkStatus();
}

absl::Status MlaWrite(const ConvertOptions& options, const Inputs& in,
                      const MlaFit& fit, StageProgress& progress,
                      ConversionReport* report) {
  StageTimer timer;
  const std::vector<mla::MlaLayer>& layers = fit.best().layers;
  CARE_ASSIGN_OR_RETURN(
      nlohmann::json config_json,
      mla::ExportConfigJson(in.config(), layers, Metadata(*report)));
  const io::DType computed = options.output_dtype.value_or(io::DType::kF32);
  if (options.output_dtype) {
    const std::string torch_name(io::TorchDTypeName(*options.output_dtype));
    config_json["torch_dtype"] = torch_name;
    config_json["care"]["dtype"] = torch_name;
  }
  io::WriterOptions wo;
  wo.overwrite = options.overwrite;
  CARE_ASSIGN_OR_RETURN(auto writer,
                        io::CheckpointWriter::Create(options.output_dir, wo));
  const mla::MlaTensorSource source(in.weights(), in.config(), layers);
  const std::vector<std::string> names = source.Names();
  const int64_t n = static_cast<int64_t>(names.size());
  for (int64_t i = 0; i < n; ++i) {
    const std::string& name = names[i];
    if (source.IsComputed(name)) {
      CARE_ASSIGN_OR_RETURN(Tensor t, source.LoadF32(name));
      CARE_RETURN_IF_ERROR(writer->AddTensorF32(name, t, computed));
    } else {
      CARE_ASSIGN_OR_RETURN(io::RawTensor raw, in.weights().Raw(name));
      if (!options.output_dtype || raw.dtype == *options.output_dtype ||
          !io::IsConvertibleToF32(raw.dtype)) {
        CARE_RETURN_IF_ERROR(writer->AddTensorRaw(name, raw.dtype, raw.shape,
                                                  raw.bytes, raw.file));
      } else {
        CARE_ASSIGN_OR_RETURN(Tensor t, in.weights().LoadF32(name));
        CARE_RETURN_IF_ERROR(
            writer->AddTensorF32(name, t, *options.output_dtype));
      }
    }
    CARE_RETURN_IF_ERROR(progress.Step("write", i + 1, n));
  }
  CARE_RETURN_IF_ERROR(writer->SetConfig(config_json));
  CARE_RETURN_IF_ERROR(writer->CopyAuxiliaryFiles(in.weights().dir()));
  const ReportFiles files = RenderReportFiles(*report);
  CARE_RETURN_IF_ERROR(writer->WriteFile("care_report.json", files.json));
  CARE_RETURN_IF_ERROR(writer->WriteFile("care_report.html", files.html));
  CARE_RETURN_IF_ERROR(writer->Commit());
  timer.Done("write", report);
  return absl::OkStatus();
}

}  // namespace care::convert::stage
