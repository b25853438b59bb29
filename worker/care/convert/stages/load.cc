// The load stage: model, budget, output checks, token streams, windows and
// resume state. Nothing expensive runs before every input is known good.
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/convert/fingerprint.h"
#include "care/convert/stages/stages.h"
#include "care/convert/task_accuracy.h"
#include "care/convert/write_checkpoint.h"
#include "care/data/dataset.h"
#include "care/engine/families.h"
#include "care/io/model_family.h"
#include "care/io/model_source.h"
#include "care/tokenizer/tokenizer.h"

namespace care::convert::stage {
namespace {

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
      return Annotate(t.status(), absl::StrCat("tokenizing ", path));
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

// What the converter supports is the family's to say (ModelFamily::
// CheckConvertible); a CARE output is never converted again.
absl::Status CheckConvertible(const ModelConfig& c, const std::string& dir) {
  if (c.latent) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir,
        " is already a CARE latent checkpoint (config.json has \"care\")"));
  }
  return Annotate(c.family->CheckConvertible(c), dir);
}

// Fail before the expensive stages; the writer re-checks at the end.
absl::Status CheckOutputDir(const ConvertOptions& options,
                            const std::string& model_dir) {
  if (options.output_dir.empty()) {
    return absl::InvalidArgumentError("an output directory is required");
  }
  std::error_code fs_error;
  const bool out_exists = std::filesystem::exists(options.output_dir, fs_error);
  if (!options.overwrite && out_exists) {
    return absl::AlreadyExistsError(
        absl::StrCat("output directory ", options.output_dir,
                     " already exists (pass --overwrite to replace it)"));
  }
  std::filesystem::path out_path =
      std::filesystem::absolute(options.output_dir, fs_error);
  if (!out_path.has_filename()) out_path = out_path.parent_path();  // "d/"
  if (const std::filesystem::path parent = out_path.parent_path();
      !std::filesystem::is_directory(parent, fs_error)) {
    return absl::NotFoundError(
        absl::StrCat("output directory ", options.output_dir, ": parent ",
                     parent.string(), " does not exist"));
  }
  if (out_exists &&
      std::filesystem::equivalent(options.output_dir, model_dir, fs_error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output directory ", options.output_dir, " is the source model"));
  }
  return absl::OkStatus();
}

// The model, its shape and budget; fills the report's run description.
absl::Status LoadModel(const ConvertOptions& options, Inputs& in,
                       ConversionReport* report) {
  // A local path may be relative or contain "..", which URIs reject.
  std::string uri = options.model;
  if (uri.find("://") == std::string::npos) {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(uri, ec);
    if (!ec) uri = abs.lexically_normal().string();
  }
  CARE_ASSIGN_OR_RETURN(in.model_dir, io::ResolveModelDir(uri));
  CARE_ASSIGN_OR_RETURN(in.model,
                        io::OpenModel(in.model_dir, engine::Families()));
  const ModelConfig& config = in.config();
  CARE_RETURN_IF_ERROR(CheckConvertible(config, in.model_dir));
  const int64_t L = config.num_hidden_layers;
  in.shape = ModelShape{L, config.kv_width(),
                        std::min(config.kv_width(), config.hidden_size)};
  CARE_ASSIGN_OR_RETURN(in.budget_width,
                        TotalLatentWidth(options.budget, in.shape));
  CARE_RETURN_IF_ERROR(CheckOutputDir(options, in.model_dir));
  report->model = options.model;
  report->output_dir = options.output_dir;
  report->architecture = LatentArchitectureName(config.architecture);
  report->method = MethodName(options.method);
  report->allocation = AllocationStrategyName(options.allocation);
  report->budget = options.budget.ToString();
  report->damping = options.damping;
  report->sequential = options.sequential;
  report->num_layers = L;
  report->kv_width_before = L * 2 * config.kv_width();
  report->budget_width = in.budget_width;
  return absl::OkStatus();
}

// The calibration windows and, with eval_data, the evaluation windows.
absl::Status LoadData(const ConvertOptions& options, Inputs& in,
                      ConversionReport* report) {
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (options.calib_data.empty()) {
    return absl::InvalidArgumentError("calibration data (--calib) is required");
  }
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> calib_stream,
                        LoadStream(options.calib_data, in.model_dir, tokenizer,
                                   options.calib_text_field));
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
  CARE_ASSIGN_OR_RETURN(in.windows, MakeCalibrationWindows(calib_stream, plan));
  // The held-out slice stays out of the sampled range either way (same
  // windows, same factors); its windows run only when the job needs them.
  report->heldout_reason = HeldoutReason(options);
  report->heldout_run = !report->heldout_reason.empty();
  if (!report->heldout_run) {
    in.windows.heldout.num_windows = 0;
    in.windows.heldout.ids.clear();
    in.windows.heldout_targets.clear();
  }
  const CalibrationWindows& windows = in.windows;
  report->calib_data = options.calib_data;
  report->calib_samples = plan.samples;
  report->calib_seq_len = plan.seq_len;
  report->seed = plan.seed;
  report->calib_range_begin = windows.sample_range.begin;
  report->calib_range_end = windows.sample_range.end;
  report->heldout_range_begin = windows.heldout_range.begin;
  report->heldout_range_end = windows.heldout_range.end;
  report->calib_tokens = windows.calib.tokens();
  report->heldout_tokens = windows.heldout.tokens();

  if (options.eval_data.empty()) return absl::OkStatus();
  std::vector<int32_t> eval_stream;
  if (shared) {
    eval_stream = calib_stream;
  } else {
    CARE_ASSIGN_OR_RETURN(eval_stream,
                          LoadStream(options.eval_data, in.model_dir, tokenizer,
                                     options.eval_text_field));
  }
  const StreamFraction eval_fraction = options.eval_range.value_or(
      shared ? StreamFraction{0.9, 1} : StreamFraction{0, 1});
  CARE_ASSIGN_OR_RETURN(data::TokenRange er,
                        Range(eval_stream.size(), eval_fraction, "evaluation"));
  eval_stream.resize(er.end);
  engine::WindowOptions wo;
  wo.seq_len = options.eval_seq_len;
  wo.max_windows = options.eval_windows;
  wo.start = er.begin;
  if (options.eval_prepend_bos) {
    CARE_ASSIGN_OR_RETURN(wo.bos, BosId(in.config(), in.model_dir, tokenizer));
  }
  absl::StatusOr<engine::EvalWindows> ew =
      engine::MakeEvalWindows(eval_stream, wo);
  if (!ew.ok()) {
    return Annotate(ew.status(),
                    absl::StrCat("evaluation data ", options.eval_data,
                                 " range [", er.begin, ", ", er.end, ")"));
  }
  in.eval = *std::move(ew);
  report->eval_data = options.eval_data;
  report->eval_range_begin = er.begin;
  report->eval_range_end = er.end;
  report->eval_seq_len = options.eval_seq_len;
  return absl::OkStatus();
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

}  // namespace

absl::StatusOr<Inputs> Load(const ConvertOptions& options,
                            StageProgress& progress, ConversionReport* report) {
  StageTimer timer;
  CARE_RETURN_IF_ERROR(progress.Step("load", 0, 1));
  Inputs in;
  CARE_RETURN_IF_ERROR(LoadModel(options, in, report));
  CARE_RETURN_IF_ERROR(LoadData(options, in, report));
  // Task files are read now so that a bad one fails before calibration.
  CARE_RETURN_IF_ERROR(CheckTaskFiles(options.eval_tasks));
  in.engine.threads = options.threads;
  in.engine.device = options.device;
  in.factorize = {options.method, options.damping, options.solver};
  in.resume = OpenResume(options, in.model_dir, in.windows);
  timer.Done("load", report);
  return in;
}

}  // namespace care::convert::stage
