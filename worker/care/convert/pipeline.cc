#include "care/convert/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "care/convert/calibrate.h"
#include "care/convert/decompose_model.h"
#include "care/convert/fingerprint.h"
#include "care/convert/flop_model.h"
#include "care/convert/latent_layer.h"
#include "care/convert/report_html.h"
#include "care/convert/resume_state.h"
#include "care/convert/spectrum_sample.h"
#include "care/convert/write_checkpoint.h"
#include "care/data/dataset.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"
#include "care/io/model_source.h"
#include "care/io/sha256.h"
#include "care/tokenizer/tokenizer.h"
#include "care/util/status_macros.h"

namespace care::convert {
namespace {

using Clock = std::chrono::steady_clock;

// Share of the whole run per stage, for ConvertProgress::overall.
struct StageWeight {
  const char* name;
  double begin, width;
};
constexpr StageWeight kStages[] = {
    {"load", 0.00, 0.02},     {"calibrate", 0.02, 0.38},
    {"allocate", 0.40, 0.10}, {"sequential", 0.50, 0.05},
    {"evaluate", 0.55, 0.35}, {"write", 0.90, 0.10}};

class Reporter {
 public:
  Reporter(const ProgressCallback& progress, const CancelCheck& cancelled)
      : progress_(progress), cancelled_(cancelled) {}

  // Starts the clock of a stage's achieved rate (ConvertProgress::seconds).
  void Begin(const std::string& stage) { started_[stage] = Clock::now(); }
  void AddFlops(const std::string& stage, double flops) {
    flops_[stage] += flops;
  }
  double Flops(const std::string& stage) const {
    auto it = flops_.find(stage);
    return it == flops_.end() ? 0 : it->second;
  }
  void set_resumed_layers(int64_t n) { resumed_layers_ = n; }

  // Emits progress, then checks cancellation.
  absl::Status Step(absl::string_view stage, int64_t step, int64_t total) {
    if (progress_) {
      ConvertProgress p;
      p.stage = std::string(stage);
      p.step = step;
      p.total = total;
      p.flops = Flops(p.stage);
      auto started = started_.try_emplace(p.stage, Clock::now()).first;
      p.seconds =
          std::chrono::duration<double>(Clock::now() - started->second).count();
      p.resumed_layers = resumed_layers_;
      for (const StageWeight& s : kStages) {
        if (stage == s.name) {
          p.overall =
              s.begin + s.width * (total > 0 ? double(step) / total : 1);
        }
      }
      progress_(p);
    }
    if (cancelled_ && cancelled_()) {
      return absl::CancelledError(absl::StrCat(
          "conversion cancelled during ", stage, " (", step, "/", total, ")"));
    }
    return absl::OkStatus();
  }
  // A LayerCallback for a pass of `total` layers that is pass `pass` of
  // `passes` in the stage; `flops(l)` is layer l's share of the pass.
  LayerCallback Layers(std::string stage, int64_t total, int64_t pass = 0,
                       int64_t passes = 1,
                       std::function<double(int64_t)> flops = nullptr) {
    return [this, stage, total, pass, passes, flops](int64_t l) {
      if (flops) AddFlops(stage, flops(l));
      return Step(stage, pass * total + l + 1, passes * total);
    };
  }

 private:
  const ProgressCallback& progress_;
  const CancelCheck& cancelled_;
  std::map<std::string, Clock::time_point> started_;
  std::map<std::string, double> flops_;
  int64_t resumed_layers_ = 0;
};

class StageTimer {
 public:
  explicit StageTimer(ConversionReport& r) : report_(r) {}
  void Done(const char* stage, double flops = 0) {
    const auto now = Clock::now();
    report_.timings.push_back(
        {stage, std::chrono::duration<double>(now - start_).count(), flops});
    start_ = now;
  }

 private:
  ConversionReport& report_;
  Clock::time_point start_ = Clock::now();
};

bool IsIdFile(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  return ext == ".u16" || ext == ".u32";
}

absl::StatusOr<std::vector<int32_t>> LoadStream(
    const std::string& path, const std::string& model_dir,
    std::unique_ptr<tok::Tokenizer>& tokenizer, const std::string& text_field) {
  if (!tokenizer) {
    absl::StatusOr<std::unique_ptr<tok::Tokenizer>> t =
        tok::LoadTokenizer(model_dir);
    if (t.ok()) {
      tokenizer = *std::move(t);
    } else if (!IsIdFile(path)) {
      return absl::Status(
          t.status().code(),
          absl::StrCat("tokenizing ", path, ": ", t.status().message()));
    }
  }
  data::TextOptions text;
  text.text_field = text_field;
  return data::LoadTokenStream(path, tokenizer.get(), text);
}

// The BOS id for eval_prepend_bos: config.json's bos_token_id, else the
// tokenizer's; an error when the model has neither or it is out of range.
absl::StatusOr<int32_t> BosId(const ModelConfig& config,
                              const std::string& model_dir,
                              std::unique_ptr<tok::Tokenizer>& tokenizer) {
  std::optional<int64_t> bos = config.bos_token_id;
  if (!bos) {
    if (!tokenizer) {
      absl::StatusOr<std::unique_ptr<tok::Tokenizer>> t =
          tok::LoadTokenizer(model_dir);
      if (t.ok()) tokenizer = *std::move(t);
    }
    if (tokenizer && tokenizer->bos_id()) bos = *tokenizer->bos_id();
  }
  if (!bos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluation.prepend_bos: ", model_dir,
        " has no BOS token (no bos_token_id in config.json, none in its "
        "tokenizer)"));
  }
  if (*bos < 0 || *bos >= config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluation.prepend_bos: ", model_dir, " bos_token_id ", *bos,
        " is outside the vocabulary [0, ", config.vocab_size, ")"));
  }
  return static_cast<int32_t>(*bos);
}

absl::StatusOr<data::TokenRange> Range(int64_t n, const StreamFraction& f,
                                       absl::string_view what) {
  absl::StatusOr<data::TokenRange> r =
      data::RangeFromFractions(n, f.begin, f.end);
  if (!r.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " range: ", r.status().message()));
  }
  return r;
}

absl::Status CheckConvertible(const ModelConfig& c, const std::string& dir) {
  if (c.latent) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir,
        " is already a CARE latent checkpoint (config.json has \"care\")"));
  }
  if (c.num_key_value_heads < 1 || c.head_dim < 1 ||
      c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": attention is not GQA/MHA (num_attention_heads ",
        c.num_attention_heads, ", num_key_value_heads ", c.num_key_value_heads,
        ", head_dim ", c.head_dim,
        "); need num_key_value_heads >= 1 dividing num_attention_heads"));
  }
  return absl::OkStatus();
}

PerplexityReport ToReport(const engine::PerplexityResult& r) {
  return {r.ppl, r.mean_nll, r.windows, r.predictions};
}

// Layer l of one forward over `tokens` tokens in windows of seq_len.
std::function<double(int64_t)> ForwardLayerFlops(const ModelConfig& c,
                                                 int64_t tokens,
                                                 int64_t seq_len,
                                                 double extra = 0) {
  return [&c, tokens, seq_len, extra](int64_t l) {
    return static_cast<double>(tokens) * LayerFlopsPerToken(c, seq_len, l) +
           extra;
  };
}

// The resume state of this conversion, or null (no work dir, or the state
// cannot be used: logged, and the conversion runs without it).
std::unique_ptr<ResumeState> OpenResume(const ConvertOptions& options,
                                        const std::string& model_dir,
                                        const CalibrationWindows& windows) {
  if (options.work_dir.empty()) return nullptr;
  absl::StatusOr<std::string> fingerprint =
      ResumeFingerprint(model_dir, windows, options);
  absl::StatusOr<std::unique_ptr<ResumeState>> state =
      fingerprint.ok() ? ResumeState::Open(options.work_dir, *fingerprint)
                       : fingerprint.status();
  if (!state.ok()) {
    ResumeLog(
        absl::StrCat("not saving or resuming: ", state.status().message()));
    return nullptr;
  }
  return *std::move(state);
}

void SaveOrLog(ResumeState* state, const std::string& name,
               const std::vector<double>& values) {
  if (state == nullptr) return;
  absl::Status saved = state->SaveValues(name, values);
  if (!saved.ok()) ResumeLog(saved.message());
}

// The cache key of one allocation's held-out score: its ranks.
std::string CandidateKey(const Allocation& a) {
  return "candidate-" +
         io::Sha256Hex(absl::StrCat(absl::StrJoin(a.rank_k, ","), ";",
                                    absl::StrJoin(a.rank_v, ",")))
             .substr(0, 16);
}

}  // namespace

absl::StatusOr<ConversionReport> ConvertModel(const ConvertOptions& options,
                                              const ProgressCallback& progress,
                                              const CancelCheck& cancelled) {
  Reporter rep(progress, cancelled);
  ConversionReport report;
  StageTimer timer(report);
  CARE_RETURN_IF_ERROR(rep.Step("load", 0, 1));

  // ---- load: model, budget, data ----
  // A local path may be relative or contain "..", which URIs reject.
  std::string uri = options.model;
  if (uri.find("://") == std::string::npos) {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(uri, ec);
    if (!ec) uri = abs.lexically_normal().string();
  }
  CARE_ASSIGN_OR_RETURN(const std::string dir, io::ResolveModelDir(uri));
  CARE_ASSIGN_OR_RETURN(io::Model model, io::OpenModel(dir));
  const ModelConfig& config = model.config;
  CARE_RETURN_IF_ERROR(CheckConvertible(config, dir));
  const int64_t L = config.num_hidden_layers;
  const ModelShape shape{L, config.kv_width(),
                         std::min(config.kv_width(), config.hidden_size)};
  CARE_ASSIGN_OR_RETURN(const int64_t budget_width,
                        TotalLatentWidth(options.budget, shape));
  if (options.output_dir.empty()) {
    return absl::InvalidArgumentError("an output directory is required");
  }
  // Fail before the expensive stages; the writer re-checks at the end.
  std::error_code fs_error;
  const bool out_exists = std::filesystem::exists(options.output_dir, fs_error);
  if (!options.overwrite && out_exists) {
    return absl::AlreadyExistsError(
        absl::StrCat("output directory ", options.output_dir,
                     " already exists (pass --overwrite to replace it)"));
  }
  if (out_exists &&
      std::filesystem::equivalent(options.output_dir, dir, fs_error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output directory ", options.output_dir, " is the source model"));
  }
  report.model = options.model;
  report.output_dir = options.output_dir;
  report.architecture = LatentArchitectureName(config.architecture);
  report.method = MethodName(options.method);
  report.allocation = AllocationStrategyName(options.allocation);
  report.budget = options.budget.ToString();
  report.damping = options.damping;
  report.sequential = options.sequential;
  report.num_layers = L;
  report.kv_width_before = L * 2 * config.kv_width();
  report.budget_width = budget_width;

  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (options.calib_data.empty()) {
    return absl::InvalidArgumentError("calibration data (--calib) is required");
  }
  CARE_ASSIGN_OR_RETURN(
      std::vector<int32_t> calib_stream,
      LoadStream(options.calib_data, dir, tokenizer, options.calib_text_field));
  const bool shared = !options.eval_data.empty() &&
                      std::filesystem::path(options.eval_data) ==
                          std::filesystem::path(options.calib_data) &&
                      options.eval_text_field == options.calib_text_field;
  const StreamFraction calib_fraction = options.calib_range.value_or(
      shared ? StreamFraction{0, 0.9} : StreamFraction{0, 1});
  CARE_ASSIGN_OR_RETURN(
      data::TokenRange calib_range,
      Range(calib_stream.size(), calib_fraction, "calibration"));
  CalibrationPlan plan;
  plan.samples = options.calib_samples;
  plan.seq_len = options.calib_seq_len;
  plan.seed = options.seed;
  plan.range = calib_range;
  plan.heldout_fraction = options.heldout_fraction;
  plan.heldout_windows = options.heldout_windows;
  CARE_ASSIGN_OR_RETURN(CalibrationWindows windows,
                        MakeCalibrationWindows(calib_stream, plan));
  report.calib_data = options.calib_data;
  report.calib_samples = plan.samples;
  report.calib_seq_len = plan.seq_len;
  report.seed = plan.seed;
  report.calib_range_begin = windows.sample_range.begin;
  report.calib_range_end = windows.sample_range.end;
  report.heldout_range_begin = windows.heldout_range.begin;
  report.heldout_range_end = windows.heldout_range.end;
  report.calib_tokens = windows.calib.tokens();
  report.heldout_tokens = windows.heldout.tokens();

  std::optional<engine::EvalWindows> eval;
  if (!options.eval_data.empty()) {
    std::vector<int32_t> eval_stream;
    if (shared) {
      eval_stream = calib_stream;
    } else {
      CARE_ASSIGN_OR_RETURN(eval_stream,
                            LoadStream(options.eval_data, dir, tokenizer,
                                       options.eval_text_field));
    }
    const StreamFraction eval_fraction = options.eval_range.value_or(
        shared ? StreamFraction{0.9, 1} : StreamFraction{0, 1});
    CARE_ASSIGN_OR_RETURN(
        data::TokenRange er,
        Range(eval_stream.size(), eval_fraction, "evaluation"));
    eval_stream.resize(er.end);
    engine::WindowOptions wo;
    wo.seq_len = options.eval_seq_len;
    wo.max_windows = options.eval_windows;
    wo.start = er.begin;
    if (options.eval_prepend_bos) {
      CARE_ASSIGN_OR_RETURN(wo.bos, BosId(config, dir, tokenizer));
    }
    absl::StatusOr<engine::EvalWindows> ew =
        engine::MakeEvalWindows(eval_stream, wo);
    if (!ew.ok()) {
      return absl::Status(
          ew.status().code(),
          absl::StrCat("evaluation data ", options.eval_data, " range [",
                       er.begin, ", ", er.end, "): ", ew.status().message()));
    }
    eval = *std::move(ew);
    report.eval_data = options.eval_data;
    report.eval_range_begin = er.begin;
    report.eval_range_end = er.end;
    report.eval_seq_len = options.eval_seq_len;
  }
  engine::EngineOptions eo;
  eo.threads = options.threads;
  eo.device = options.device;  // Every engine pass of this job runs there.
  std::unique_ptr<ResumeState> resume = OpenResume(options, dir, windows);
  timer.Done("load");

  // ---- calibrate + decompose: one pass of the original model ----
  const FactorizeOptions fo{options.method, options.damping, options.solver};
  const int64_t pass_tokens = windows.calib.tokens() + windows.heldout.tokens();
  const double fit_flops = FitFlopsPerLayer(config, windows.calib.tokens(),
                                            windows.heldout.tokens());
  rep.Begin("calibrate");
  // The first layer the pass reports after k restored ones is layer k.
  bool first_layer = true;
  LayerCallback calibrate_layer = rep.Layers(
      "calibrate", L, 0, 1,
      ForwardLayerFlops(config, pass_tokens, plan.seq_len, fit_flops));
  CARE_ASSIGN_OR_RETURN(DecomposedModel dm,
                        CalibrateAndDecompose(
                            config, *model.weights, windows, fo, eo,
                            [&](int64_t l) {
                              if (first_layer) rep.set_resumed_layers(l);
                              first_layer = false;
                              return calibrate_layer(l);
                            },
                            resume.get()));
  report.resumed_layers = dm.resumed_layers;
  rep.set_resumed_layers(dm.resumed_layers);
  if (dm.resumed_layers < L) {
    rep.AddFlops("calibrate", static_cast<double>(dm.heldout_original.count) *
                                  HeadFlopsPerToken(config));
  } else {
    CARE_RETURN_IF_ERROR(rep.Step("calibrate", L, L));
  }
  report.heldout_nll_original = dm.heldout_original.mean();
  std::vector<LayerDecomposition>& decomp = dm.layers;
  LayerSpectra spectra;
  for (const LayerDecomposition& d : decomp) {
    spectra.k.push_back(d.k.singular_values);
    spectra.v.push_back(d.v.singular_values);
  }
  timer.Done("calibrate", rep.Flops("calibrate"));
  report.timings.push_back(
      {"decompose", dm.decompose_seconds,
       static_cast<double>(L - dm.resumed_layers) * fit_flops});

  // ---- allocate ----
  auto build =
      [&](const Allocation& a) -> absl::StatusOr<std::vector<LatentLayer>> {
    std::vector<LatentLayer> layers;
    for (int64_t l = 0; l < L; ++l) {
      // Re-read from the checkpoint: the pass dropped them (docs/scale.md).
      CARE_ASSIGN_OR_RETURN(LayerWeights w,
                            LoadLayerWeights(config, *model.weights, l));
      CARE_ASSIGN_OR_RETURN(
          LatentLayer x, TruncateLayer(decomp[l], w, a.rank_k[l], a.rank_v[l]));
      layers.push_back(std::move(x));
    }
    return layers;
  };
  auto heldout_nll = [&](const std::vector<LatentLayer>& layers,
                         const LayerCallback& cb) {
    return WindowNll(
        config, *model.weights, windows.heldout, windows.heldout_targets,
        [&](int64_t l) { return layers[l].MakeProjector(); }, eo, cb);
  };
  std::vector<Allocation> candidates;
  switch (options.allocation) {
    case AllocationStrategy::kUniform: {
      CARE_ASSIGN_OR_RETURN(Allocation a, AllocateUniform(budget_width, shape));
      candidates.push_back(std::move(a));
      break;
    }
    case AllocationStrategy::kAdjusted: {
      CARE_ASSIGN_OR_RETURN(
          Allocation a,
          AllocateAdjusted(spectra, budget_width, shape, options.adjusted));
      candidates.push_back(std::move(a));
      break;
    }
    case AllocationStrategy::kAuto: {
      CARE_ASSIGN_OR_RETURN(candidates,
                            CandidateAllocations(spectra, budget_width, shape));
      break;
    }
  }
  const int64_t n_cand = static_cast<int64_t>(candidates.size());
  int64_t scored = 0;
  rep.Begin("allocate");
  CARE_ASSIGN_OR_RETURN(
      AutoChoice choice,
      ChooseAllocation(
          candidates, [&](const Allocation& a) -> absl::StatusOr<double> {
            // A score saved by an earlier attempt (same fingerprint, ranks).
            const std::string key = CandidateKey(a);
            if (resume) {
              if (auto saved = resume->LoadValues(key, 1)) {
                ++scored;
                return (*saved)[0];
              }
            }
            CARE_ASSIGN_OR_RETURN(auto layers, build(a));
            CARE_ASSIGN_OR_RETURN(
                engine::NllSum nll,
                heldout_nll(layers,
                            rep.Layers("allocate", L, scored, n_cand,
                                       ForwardLayerFlops(
                                           config, windows.heldout.tokens(),
                                           plan.seq_len))));
            rep.AddFlops("allocate", static_cast<double>(nll.count) *
                                         HeadFlopsPerToken(config));
            ++scored;
            SaveOrLog(resume.get(), key, {nll.mean()});
            return nll.mean();
          }));
  const Allocation& chosen = choice.candidates[choice.best].allocation;
  report.allocation_chosen = chosen.name;
  report.heldout_nll_converted = choice.candidates[choice.best].score;
  for (int64_t i = 0; i < n_cand; ++i) {
    const ScoredAllocation& c = choice.candidates[i];
    report.candidates.push_back({c.allocation.name, c.score, i == choice.best,
                                 c.allocation.rank_k, c.allocation.rank_v});
  }
  CARE_ASSIGN_OR_RETURN(std::vector<LatentLayer> layers, build(chosen));
  report.kv_width_after = chosen.Total();
  timer.Done("allocate", rep.Flops("allocate"));

  // ---- sequential (optional): re-fit each layer on converted inputs ----
  std::vector<LayerGrams>* grams = &dm.grams;
  SequentialModel seq;
  if (options.sequential) {
    rep.Begin("sequential");
    CARE_ASSIGN_OR_RETURN(
        seq, SequentialRefit(
                 config, *model.weights, windows, fo, chosen.rank_k,
                 chosen.rank_v, eo,
                 rep.Layers("sequential", L, 0, 1,
                            ForwardLayerFlops(config, pass_tokens, plan.seq_len,
                                              fit_flops))));
    rep.AddFlops("sequential",
                 static_cast<double>(seq.heldout_converted.count) *
                     HeadFlopsPerToken(config));
    layers = std::move(seq.layers);
    decomp = std::move(seq.decompositions);
    grams = &seq.grams;
    report.heldout_nll_converted = seq.heldout_converted.mean();
    timer.Done("sequential", rep.Flops("sequential"));
  }
  for (int64_t l = 0; l < L; ++l) {
    const LayerDecomposition& d = decomp[l];
    const LayerGrams& g = (*grams)[l];
    LayerReport lr;
    lr.rank_k = chosen.rank_k[l];
    lr.rank_v = chosen.rank_v[l];
    lr.heldout_error_k = RelativeErrorFromGram(g.heldout_k, d.k, lr.rank_k);
    lr.heldout_error_v = RelativeErrorFromGram(g.heldout_v, d.v, lr.rank_v);
    lr.calib_error_k = RelativeErrorFromGram(g.calib_k, d.k, lr.rank_k);
    lr.calib_error_v = RelativeErrorFromGram(g.calib_v, d.v, lr.rank_v);
    lr.retained_energy_k = layers[l].k.retained_energy;
    lr.retained_energy_v = layers[l].v.retained_energy;
    lr.note = d.scaling.note;
    // The spectra the allocation compared (first pass, even when sequential).
    lr.spectrum_k = SampleSpectrum(spectra.k[l].data(), spectra.k[l].size());
    lr.spectrum_v = SampleSpectrum(spectra.v[l].data(), spectra.v[l].size());
    report.layers.push_back(std::move(lr));
  }
  decomp.clear();  // the factors are all that is needed from here on

  // ---- evaluate: original and converted on the same windows ----
  if (eval) {
    rep.Begin("evaluate");
    const auto eval_flops =
        ForwardLayerFlops(config, eval->inputs.tokens(), eval->inputs.seq_len);
    const auto add_head = [&](const engine::PerplexityResult& r) {
      rep.AddFlops("evaluate", static_cast<double>(r.predictions) *
                                   HeadFlopsPerToken(config));
    };
    // The original model's score does not depend on the conversion: an
    // earlier attempt's is reused (keyed by the evaluation windows).
    const std::string orig_key = "eval-original-" + EvalWindowsKey(*eval);
    std::optional<engine::PerplexityResult> orig;
    if (resume) {
      if (auto saved = resume->LoadValues(orig_key, 4)) {
        orig = engine::PerplexityResult{static_cast<int64_t>((*saved)[0]),
                                        static_cast<int64_t>((*saved)[1]),
                                        (*saved)[2], (*saved)[3]};
      }
    }
    if (!orig) {
      engine::LayerHooks original_hooks;
      LayerCallback cb0 = rep.Layers("evaluate", L, 0, 2, eval_flops);
      original_hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
        return cb0(l);
      };
      CARE_ASSIGN_OR_RETURN(
          orig, engine::EvaluatePerplexity(config, *model.weights, *eval, eo,
                                           original_hooks));
      add_head(*orig);
      SaveOrLog(
          resume.get(), orig_key,
          {static_cast<double>(orig->windows),
           static_cast<double>(orig->predictions), orig->mean_nll, orig->ppl});
    }
    engine::LayerHooks converted_hooks;
    LayerCallback cb1 = rep.Layers("evaluate", L, 1, 2, eval_flops);
    converted_hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
      return cb1(l);
    };
    converted_hooks.make_kv_projector =
        [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
      return layers[l].MakeProjector();
    };
    CARE_ASSIGN_OR_RETURN(
        engine::PerplexityResult conv,
        engine::EvaluatePerplexity(config, *model.weights, *eval, eo,
                                   converted_hooks));
    add_head(conv);
    report.original = ToReport(*orig);
    report.converted = ToReport(conv);
  }
  timer.Done("evaluate", rep.Flops("evaluate"));

  // ---- write ----
  const LatentMetadata meta{report.method, report.allocation_chosen,
                            report.budget, report.damping};
  WriteOptions wopt;
  wopt.overwrite = options.overwrite;
  wopt.dtype = options.output_dtype;
  const nlohmann::json report_json = ReportToJson(report);
  wopt.report_json = report_json.dump(2);
  wopt.report_html = ReportHtml(report_json);
  CARE_RETURN_IF_ERROR(WriteConvertedCheckpoint(
      *model.weights, config, layers, ConvertedConfigJson(config, layers, meta),
      options.output_dir, wopt, rep.Layers("write", L)));
  timer.Done("write");
  // The output is in place: the state has served its purpose.
  if (resume) resume->Remove();
  return report;
}

}  // namespace care::convert
