#include "care/convert/mla_export/heal_stage.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/gqa_attention.h"
#include "care/convert/mla_export/heal_backend.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/heal_resume.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/convert/mla_export/mla_config.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/data/dataset.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/tensor_names.h"
#include "care/tokenizer/tokenizer.h"

namespace care::convert::stage {
namespace {

using mla::HealMatrix;

// The healing token stream and the range its training windows come from.
struct HealStream {
  std::vector<int32_t> ids;
  int64_t begin = 0, end = 0;
  std::string source;
};

absl::StatusOr<HealStream> LoadHealStream(const ConvertOptions& options,
                                          const Inputs& in) {
  const MlaExportOptions& o = options.mla;
  HealStream s;
  const bool calib = o.heal_data.empty();
  s.source = calib ? options.calib_data : o.heal_data;
  const std::string ext = std::filesystem::path(s.source).extension().string();
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (ext != ".u16" && ext != ".u32") {
    absl::StatusOr<std::unique_ptr<tok::Tokenizer>> t =
        tok::LoadTokenizer(in.model_dir);
    if (!t.ok()) {
      return Annotate(t.status(), absl::StrCat("healing data ", s.source));
    }
    tokenizer = *std::move(t);
  }
  data::TextOptions text;
  text.text_field = calib ? options.calib_text_field : o.heal_text_field;
  CARE_ASSIGN_OR_RETURN(s.ids,
                        data::LoadTokenStream(s.source, tokenizer.get(), text));
  s.end = static_cast<int64_t>(s.ids.size());
  if (calib) {
    // The calibration windows' sampled range: never the held-out slice or
    // the evaluation range.
    s.begin = in.windows.sample_range.begin;
    if (in.windows.sample_range.end >= 0) {
      s.end = std::min(s.end, in.windows.sample_range.end);
    }
  }
  return s;
}

// Up to `tokens` tokens in windows of T, spread evenly over the range.
absl::StatusOr<engine::TokenWindows> TrainWindows(const HealStream& s,
                                                  int64_t tokens, int64_t t) {
  const int64_t avail = (s.end - s.begin) / t;
  const int64_t n = std::min(avail, tokens / t);
  if (n < 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "healing data ", s.source, ": range [", s.begin, ", ", s.end,
        ") holds no window of ", t, " tokens (--heal-tokens ", tokens, ")"));
  }
  engine::TokenWindows w;
  w.seq_len = t;
  w.num_windows = n;
  const int64_t stride = (s.end - s.begin) / n;  // >= t
  for (int64_t i = 0; i < n; ++i) {
    const auto first = s.ids.begin() + s.begin + i * stride;
    w.ids.insert(w.ids.end(), first, first + t);
  }
  return w;
}

// The calibration held-out slice (consecutive tokens) cut into windows of T.
absl::StatusOr<engine::TokenWindows> HeldoutWindows(const Inputs& in,
                                                    int64_t t) {
  const engine::TokenWindows& h = in.windows.heldout;
  engine::TokenWindows w;
  w.seq_len = t;
  w.num_windows = h.tokens() / t;
  if (w.num_windows < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("healing: the calibration held-out slice has ", h.tokens(),
                     " tokens, fewer than one window of --heal-seq-len ", t,
                     " (raise --heldout-windows)"));
  }
  w.ids.assign(h.ids.begin(), h.ids.begin() + w.tokens());
  return w;
}

engine::TokenWindows Concat(const engine::TokenWindows& a,
                            const engine::TokenWindows& b) {
  engine::TokenWindows all = a;
  all.ids.insert(all.ids.end(), b.ids.begin(), b.ids.end());
  all.num_windows += b.num_windows;
  return all;
}

// The export's engine config (its config.json parsed like any model's).
absl::StatusOr<ModelConfig> ExportConfig(const Inputs& in,
                                         const std::vector<mla::MlaLayer>& l,
                                         const ConversionReport& report) {
  CARE_ASSIGN_OR_RETURN(
      nlohmann::json j,
      mla::ExportConfigJson(in.config(), l,
                            {report.method, report.budget, report.damping}));
  return ParseModelConfig(j.dump(), "deepseek-v3 export config.json",
                          engine::Families());
}

// The export's k/v input of the next layer, [tokens, D].
absl::StatusOr<MatrixRM> KvInput(engine::LayerwiseForward& fwd) {
  MatrixRM x;
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t, const compute::Matrix& m) -> absl::Status {
    CARE_ASSIGN_OR_RETURN(x, engine::DownloadMatrix(fwd.backend(), m));
    return absl::OkStatus();
  };
  CARE_RETURN_IF_ERROR(fwd.ObserveKvInput(hooks));
  return x;
}

absl::StatusOr<double> ExportNll(const Inputs& in,
                                 const std::vector<mla::MlaLayer>& layers,
                                 const ConversionReport& report,
                                 const engine::TokenWindows& windows) {
  CARE_ASSIGN_OR_RETURN(const ModelConfig config,
                        ExportConfig(in, layers, report));
  const mla::MlaTensorSource source(in.weights(), in.config(), layers);
  CARE_ASSIGN_OR_RETURN(auto fwd, engine::LayerwiseForward::Create(
                                      config, source, windows, in.engine));
  CARE_RETURN_IF_ERROR(fwd->RunLayers(config.num_hidden_layers));
  CARE_ASSIGN_OR_RETURN(engine::NllSum nll,
                        fwd->ScoreTargets(NextTokenTargets(windows)));
  return nll.mean();
}

// What a saved healed layer must have been healed with (heal_resume.h):
// the chosen candidate, the fit options, every healing option and the
// healing windows' ids (FNV-1a), beyond the state's fingerprint.
std::string HealResumeKey(const ConvertOptions& options,
                          const MlaCandidate& cand, int64_t train_windows,
                          const engine::TokenWindows& all) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (int32_t id : all.ids) {
    for (int b = 0; b < 4; ++b) {
      hash ^= (static_cast<uint32_t>(id) >> (8 * b)) & 0xff;
      hash *= 0x100000001b3ULL;
    }
  }
  const MlaExportOptions& o = options.mla;
  return absl::StrFormat(
      "candidate %d/%d/%d balance %d nope %d inputs %s seq %d steps %d "
      "batch %d lr %a seed %d windows %d+%d ids %016x",
      cand.rope_dim, cand.freqfold, cand.kv_lora_rank, o.balance_kv,
      o.nope_correction, o.heal_inputs_healed ? "healed" : "original",
      all.seq_len, o.heal_steps, o.heal_batch_windows, o.heal_lr, options.seed,
      train_windows, all.num_windows - train_windows, hash);
}

// The healing window length: --heal-seq-len, at most the model's positions.
int64_t HealSeqLen(const ConvertOptions& options, const ModelConfig& config) {
  int64_t t_len = options.mla.heal_seq_len;
  if (config.max_position_embeddings > 0) {
    t_len = std::min(t_len, config.max_position_embeddings);
  }
  return t_len;
}

}  // namespace

absl::Status MlaHealPreflight(const ConvertOptions& options, const Inputs& in) {
  const MlaExportOptions& o = options.mla;
  if (!o.heal) return absl::OkStatus();
  const ModelConfig& config = in.config();
  const int64_t t_len = HealSeqLen(options, config);
  if (t_len < 2 || o.heal_tokens < t_len || o.heal_steps < 0 ||
      o.heal_batch_windows < 1 || !(o.heal_lr > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "healing: --heal-seq-len ", t_len, " must be >= 2, --heal-tokens ",
        o.heal_tokens, " at least one window, --heal-steps ", o.heal_steps,
        " >= 0, batch windows ", o.heal_batch_windows, " >= 1 and the ",
        "learning rate ", o.heal_lr, " > 0"));
  }
  if (config.attention_bias || config.o_proj_bias) {
    // The healed parameters have no bias channel (mla_bias.h) yet.
    return absl::InvalidArgumentError(
        "healing: --heal local does not support models with attention "
        "biases (attention_bias / qwen2 q/k/v biases) yet; convert without "
        "--heal");
  }
  return absl::OkStatus();
}

absl::Status MlaHeal(const ConvertOptions& options, const Inputs& in,
                     MlaFit& fit, StageProgress& progress,
                     ConversionReport* report) {
  const MlaExportOptions& o = options.mla;
  if (!o.heal) return absl::OkStatus();
  StageTimer timer;
  const auto start = std::chrono::steady_clock::now();
  progress.Begin("heal");
  const ModelConfig& config = in.config();
  const int64_t L = in.num_layers(), d = config.hidden_size;
  // Options and model were checked by MlaHealPreflight before calibration.
  const int64_t t_len = HealSeqLen(options, config);
  CARE_ASSIGN_OR_RETURN(const HealStream stream, LoadHealStream(options, in));
  CARE_ASSIGN_OR_RETURN(const engine::TokenWindows train,
                        TrainWindows(stream, o.heal_tokens, t_len));
  CARE_ASSIGN_OR_RETURN(const engine::TokenWindows held,
                        HeldoutWindows(in, t_len));
  const engine::TokenWindows all = Concat(train, held);
  const int64_t n_train = train.tokens(), n_held = held.tokens();

  MlaCandidate& cand = fit.candidates[fit.chosen];
  const std::vector<mla::MlaLayer> one_shot = cand.layers;
  const int64_t n_h = config.num_attention_heads, dh = config.head_dim;
  const int64_t rope = cand.rope_dim, rank = cand.kv_lora_rank;

  // The export's RoPE and softmax scale, as the engine's deepseek_v3 family
  // runs the written config.
  CARE_ASSIGN_OR_RETURN(const ModelConfig export_config,
                        ExportConfig(in, cand.layers, *report));
  CARE_ASSIGN_OR_RETURN(const engine::RopeFrequencies freqs,
                        engine::ComputeRopeFrequencies(export_config));
  if (freqs.rotary_dim != rope) {
    return absl::InternalError(absl::StrCat(
        "healing: the export rotates ", freqs.rotary_dim, " dims, not ", rope));
  }
  const engine::RopeTable table(freqs, t_len);
  mla::HealAttention<float> attn;
  attn.shape = {n_h, dh, rope, rank, d};
  attn.seq_len = t_len;
  attn.cos =
      Eigen::Map<const HealMatrix<float>>(table.cos().data(), t_len, rope / 2);
  attn.sin =
      Eigen::Map<const HealMatrix<float>>(table.sin().data(), t_len, rope / 2);
  attn.scale =
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh + rope)));

  engine::EngineOptions eo = in.engine;
  eo.prefetch_weights = false;  // layer l+1 is healed after l runs
  CARE_ASSIGN_OR_RETURN(auto orig, engine::LayerwiseForward::Create(
                                       config, in.weights(), all, eo));
  std::unique_ptr<mla::MlaTensorSource> healed_source;
  std::unique_ptr<engine::LayerwiseForward> student;
  if (o.heal_inputs_healed) {
    healed_source = std::make_unique<mla::MlaTensorSource>(in.weights(), config,
                                                           cand.layers);
    CARE_ASSIGN_OR_RETURN(student, engine::LayerwiseForward::Create(
                                       export_config, *healed_source, all, eo));
  }

  MlaHealReport hr;
  hr.inputs = o.heal_inputs_healed ? "healed" : "original";
  hr.data = stream.source;
  hr.train_tokens = n_train;
  hr.heldout_tokens = n_held;
  hr.seq_len = t_len;
  hr.max_steps = o.heal_steps;
  hr.batch_windows = o.heal_batch_windows;
  hr.learning_rate = o.heal_lr;
  const int64_t steps = std::max<int64_t>(o.heal_steps, 1);
  const std::string key = HealResumeKey(options, cand, train.num_windows, all);
  // The engine config's head count is the export's; the shapes a saved
  // layer must have.
  const mla::HealShape shape = attn.shape;
  // Sets layer l's healed parameters and the latent norm's scale for them.
  auto keep = [&](int64_t l, mla::HealParams<float> p, int alpha_log2,
                  double norm_error_mean) {
    mla::MlaLayer& layer = cand.layers[l];
    layer.alpha_log2 = alpha_log2;
    layer.norm_error_mean = norm_error_mean;
    layer.healed = std::make_shared<const mla::HealParams<float>>(std::move(p));
    if (report->deepseek_v3 &&
        l < static_cast<int64_t>(report->deepseek_v3->layers.size())) {
      report->deepseek_v3->layers[l].alpha_log2 = alpha_log2;
      report->deepseek_v3->layers[l].norm_error_mean = norm_error_mean;
    }
  };
  for (int64_t l = 0; l < L; ++l) {
    std::optional<mla::HealedLayer> saved;
    if (in.resume != nullptr) {
      saved = mla::LoadHealedLayer(*in.resume, l, key, shape);
    }
    if (saved) {
      // Restored: no forward of the layer's inputs or healing needed, only
      // the passes' advance to the next layer.
      if (saved->params) {
        keep(l, *std::move(saved->params), saved->alpha_log2,
             saved->norm_error_mean);
      }
      hr.layers.push_back(saved->report);
      ++hr.resumed_layers;
      CARE_RETURN_IF_ERROR(orig->RunLayer());
      if (student) CARE_RETURN_IF_ERROR(student->RunLayer());
      CARE_RETURN_IF_ERROR(progress.Step("heal", (l + 1) * steps, L * steps));
      continue;
    }
    CARE_ASSIGN_OR_RETURN(const MatrixRM x_orig, KvInput(*orig));
    MatrixRM x_student;
    if (student) {
      CARE_ASSIGN_OR_RETURN(x_student, KvInput(*student));
    }
    const MatrixRM& x = student ? x_student : x_orig;  // [N, D]
    CARE_ASSIGN_OR_RETURN(
        const mla::GqaAttention<float> gqa,
        mla::LoadGqaAttention<float>(config, in.weights(), l));
    CARE_ASSIGN_OR_RETURN(const HealMatrix<float> y,
                          mla::GqaAttentionOutput<float>(gqa, t_len, x_orig));
    mla::MlaLayer& layer = cand.layers[l];
    // Healing keeps o_proj fixed: the refitted one when the export has it.
    attn.o_proj = layer.o_proj.size() > 0 ? layer.o_proj : gqa.w_o;
    CARE_ASSIGN_OR_RETURN(Tensor q, in.weights().LoadF32(io::names::QProj(l)));
    CARE_ASSIGN_OR_RETURN(LayerWeights w,
                          LoadLayerWeights(config, in.weights(), l));
    CARE_ASSIGN_OR_RETURN(mla::HealParams<float> p,
                          mla::HealStart(l, layer, q, w, n_h));
    mla::HealOptions ho;
    ho.max_steps = o.heal_steps;
    ho.batch_windows = o.heal_batch_windows;
    ho.learning_rate = o.heal_lr;
    ho.seed = options.seed + static_cast<uint64_t>(l);
    ho.on_step = [&](int64_t s) {
      return progress.Step("heal", l * steps + std::min(s, steps), L * steps);
    };
    // On the engine's backend (cpu, or the GPU with --device cuda).
    absl::StatusOr<mla::HealResult> r = mla::HealLayerOnBackend(
        orig->backend(), attn, p, x.topRows(n_train), y.topRows(n_train),
        x.bottomRows(n_held), y.bottomRows(n_held), ho);
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("healing layer ", l));
    MlaHealLayerReport lr;
    lr.heldout_error_before = r->heldout_before;
    lr.heldout_error_after = r->heldout_after;
    lr.train_error_before = r->train_before;
    lr.steps = r->steps;
    lr.best_step = r->best_step;
    lr.accepted = r->best_step > 0;
    mla::HealedLayer record;
    record.report = lr;
    if (lr.accepted) {
      // α for the healed latent's energy E[mean(c²)] on the training rows.
      const double energy =
          (x.topRows(n_train).cast<double>() * p.w_down.cast<double>())
              .squaredNorm() /
          static_cast<double>(n_train * rank);
      record.alpha_log2 =
          mla::NormAlphaLog2(energy, mla::MlaLayerOptions{}.norm_error_target);
      const double alpha = std::ldexp(1.0, -record.alpha_log2);
      record.norm_error_mean =
          alpha * alpha * energy /
          (2 * mla::kLatentNormSqrtEps * mla::kLatentNormSqrtEps);
      record.params = std::move(p);
    }
    if (in.resume != nullptr) {
      mla::SaveHealedLayer(*in.resume, l, key, record);
    }
    if (record.params) {
      keep(l, *std::move(record.params), record.alpha_log2,
           record.norm_error_mean);
    }
    hr.layers.push_back(lr);
    CARE_RETURN_IF_ERROR(orig->RunLayer());
    if (student) CARE_RETURN_IF_ERROR(student->RunLayer());
    CARE_RETURN_IF_ERROR(progress.Step("heal", (l + 1) * steps, L * steps));
  }
  orig.reset();
  student.reset();
  CARE_ASSIGN_OR_RETURN(hr.heldout_nll_before,
                        ExportNll(in, one_shot, *report, held));
  CARE_ASSIGN_OR_RETURN(hr.heldout_nll_after,
                        ExportNll(in, cand.layers, *report, held));
  hr.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (report->deepseek_v3) report->deepseek_v3->heal = std::move(hr);
  timer.Done("heal", report);
  return absl::OkStatus();
}

}  // namespace care::convert::stage
