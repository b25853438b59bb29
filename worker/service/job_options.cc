#include "service/job_options.h"

#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/uri.h"
#include "proto/api/names.h"
#include "proto/api/spec_validation.h"

namespace care::worker {

namespace {

absl::StatusOr<std::string> LocalPath(const std::string& uri,
                                      absl::string_view field) {
  auto parsed = care::ParseUri(uri, /*allow_hub=*/false);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", parsed.status().message()));
  }
  return parsed->path;
}

// The pipeline's option words are the API's (api/names.h).
care::v1::Method ApiMethod(const std::string& name) {
  return api::ValueOf(api::kMethodWords, name).value_or(api::kDefaultMethod);
}

// Reads `key` of `object` as T; InvalidArgument naming it otherwise.
template <typename T>
absl::StatusOr<T> Field(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null() || it->is_structured() ||
      (std::is_arithmetic_v<T> && !it->is_number()) ||
      (std::is_same_v<T, std::string> && !it->is_string())) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline report: field '", key, "' missing or mistyped"));
  }
  return it->get<T>();
}

absl::Status FillPerplexity(const nlohmann::json& p,
                            care::v1::Perplexity* out) {
  if (!p.is_object()) {
    return absl::InvalidArgumentError(
        "pipeline report: perplexity not an object");
  }
  CARE_ASSIGN_OR_RETURN(double ppl, Field<double>(p, "ppl"));
  CARE_ASSIGN_OR_RETURN(double nll, Field<double>(p, "mean_nll"));
  CARE_ASSIGN_OR_RETURN(int64_t predictions, Field<int64_t>(p, "predictions"));
  out->set_ppl(ppl);
  out->set_mean_nll(nll);
  out->set_predictions(predictions);
  return absl::OkStatus();
}

}  // namespace

// deepseek_v3.heal of the pipeline report -> Report.healing and the
// per-layer errors (LayerReport 8-10; entries added for the layers).
absl::Status FillHealing(const nlohmann::json& h, care::v1::Report& out) {
  care::v1::HealingReport* hr = out.mutable_healing();
  CARE_ASSIGN_OR_RETURN(std::string inputs, Field<std::string>(h, "inputs"));
  hr->set_inputs(inputs == "healed" ? care::v1::HEALING_INPUTS_HEALED
                                    : care::v1::HEALING_INPUTS_ORIGINAL);
  CARE_ASSIGN_OR_RETURN(int64_t train, Field<int64_t>(h, "train_tokens"));
  CARE_ASSIGN_OR_RETURN(int64_t held, Field<int64_t>(h, "heldout_tokens"));
  CARE_ASSIGN_OR_RETURN(double seconds, Field<double>(h, "seconds"));
  CARE_ASSIGN_OR_RETURN(double before, Field<double>(h, "heldout_nll_before"));
  CARE_ASSIGN_OR_RETURN(double after, Field<double>(h, "heldout_nll_after"));
  hr->set_train_tokens(train);
  hr->set_heldout_tokens(held);
  hr->set_seconds(seconds);
  hr->set_heldout_nll_before(before);
  hr->set_heldout_nll_after(after);
  auto layers = h.find("layers");
  if (layers == h.end() || !layers->is_array()) {
    return absl::InvalidArgumentError("pipeline report: heal.layers missing");
  }
  for (size_t l = 0; l < layers->size(); ++l) {
    const nlohmann::json& e = (*layers)[l];
    care::v1::LayerReport* dest = nullptr;
    for (auto& existing : *out.mutable_layers()) {
      if (existing.layer() == static_cast<int32_t>(l)) dest = &existing;
    }
    if (dest == nullptr) {
      dest = out.add_layers();
      dest->set_layer(static_cast<int32_t>(l));
    }
    CARE_ASSIGN_OR_RETURN(double eb, Field<double>(e, "heldout_error_before"));
    CARE_ASSIGN_OR_RETURN(double ea, Field<double>(e, "heldout_error_after"));
    auto acc = e.find("accepted");
    const bool accepted =
        acc != e.end() && acc->is_boolean() && acc->get<bool>();
    dest->set_heal_error_before(eb);
    dest->set_heal_error_after(ea);
    dest->set_heal_accepted(accepted);
  }
  return absl::OkStatus();
}

care::v1::Stage StageFromPipeline(const std::string& stage) {
  if (stage == "load") return care::v1::STAGE_LOADING;
  if (stage == "calibrate") return care::v1::STAGE_CALIBRATING;
  if (stage == "decompose" || stage == "allocate") {
    return care::v1::STAGE_DECOMPOSING;
  }
  if (stage == "heal") return care::v1::STAGE_HEALING;
  if (stage == "evaluate") return care::v1::STAGE_EVALUATING;
  if (stage == "write") return care::v1::STAGE_WRITING;
  return care::v1::STAGE_UNSPECIFIED;
}

// HealingSpec -> the pipeline's "heal" object (serve_command.cc); unset
// fields take the pipeline's defaults.
absl::StatusOr<nlohmann::json> HealingOptions(const care::v1::HealingSpec& h) {
  nlohmann::json heal = {
      {"mode", h.mode() == care::v1::HEALING_MODE_LOCAL ? "local" : "none"},
      {"inputs",
       h.inputs() == care::v1::HEALING_INPUTS_HEALED ? "healed" : "original"}};
  if (!h.dataset_uri().empty()) {
    CARE_ASSIGN_OR_RETURN(std::string data,
                          LocalPath(h.dataset_uri(), "healing.dataset_uri"));
    heal["data"] = data;
  }
  if (h.tokens() > 0) heal["tokens"] = h.tokens();
  if (h.steps() > 0) heal["steps"] = h.steps();
  return heal;
}

absl::StatusOr<nlohmann::json> PipelineOptionsFromJob(const care::v1::Job& job,
                                                      int threads) {
  const care::v1::JobSpec& spec = job.spec();
  nlohmann::json o = nlohmann::json::object();
  o["model"] = spec.model_uri();  // The pipeline resolves file:// and hf://.
  CARE_ASSIGN_OR_RETURN(std::string output,
                        LocalPath(spec.output_uri(), "output_uri"));
  o["output_dir"] = output;
  const bool deepseek_v3 =
      spec.output_layout() == care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3;
  o["layout"] = deepseek_v3 ? "deepseek_v3" : "latent";
  if (deepseek_v3) {
    o["rope_dim"] = spec.rope_dim();          // 0 = auto
    o["freqfold"] = spec.freqfold();          // 0 = auto
    o["kv_lora_rank"] = spec.kv_lora_rank();  // 0 = from the budget
    o["kv_balance"] = !spec.no_kv_balance();
    CARE_ASSIGN_OR_RETURN(o["heal"], HealingOptions(spec.healing()));
  }
  switch (spec.kv_budget().budget_case()) {
    case care::v1::KvBudget::kKvSaveFraction:
      o["budget"] = {{"kv_save", spec.kv_budget().kv_save_fraction()}};
      break;
    case care::v1::KvBudget::kRankPerMatrix:
      o["budget"] = {{"rank", spec.kv_budget().rank_per_matrix()}};
      break;
    default:
      if (!(deepseek_v3 && spec.kv_lora_rank() > 0)) {
        return absl::InvalidArgumentError("kv_budget: required");
      }
      o["budget"] = {{"kv_save", 0.0}};  // unused: kv_lora_rank is given
  }
  // Unset: the API's defaults (spec_validation.h).
  absl::string_view method = api::WordOf(api::kMethodWords, spec.method());
  if (method.empty())
    method = api::WordOf(api::kMethodWords, api::kDefaultMethod);
  o["method"] = std::string(method);
  absl::string_view allocation =
      api::WordOf(api::kAllocationWords, spec.rank_allocation());
  if (allocation.empty()) {
    allocation = api::WordOf(api::kAllocationWords, api::kDefaultAllocation);
  }
  o["allocation"] = std::string(allocation);
  o["damping"] = spec.has_damping() ? spec.damping() : api::kDefaultDamping;

  const auto& calib = spec.calibration();
  const auto& eval = spec.evaluation();
  o["sequential"] = calib.sequential();
  o["calib_text_field"] =
      calib.text_field().empty() ? api::kDefaultTextField : calib.text_field();
  o["eval_text_field"] =
      eval.text_field().empty() ? api::kDefaultTextField : eval.text_field();
  std::string calib_data;
  if (!calib.dataset_uri().empty()) {
    CARE_ASSIGN_OR_RETURN(
        calib_data, LocalPath(calib.dataset_uri(), "calibration.dataset_uri"));
  }
  o["calib_data"] = calib_data;
  o["calib_samples"] =
      calib.samples() > 0 ? calib.samples() : api::kDefaultCalibrationSamples;
  o["calib_seq_len"] = calib.sequence_length() > 0
                           ? calib.sequence_length()
                           : api::kDefaultCalibrationSequenceLength;
  o["seed"] = calib.seed();
  std::string eval_data;
  if (!eval.dataset_uri().empty()) {
    CARE_ASSIGN_OR_RETURN(
        eval_data, LocalPath(eval.dataset_uri(), "evaluation.dataset_uri"));
  }
  o["eval_prepend_bos"] = eval.prepend_bos();
  o["eval_data"] = eval_data;
  o["eval_seq_len"] = eval.window_length() > 0
                          ? eval.window_length()
                          : api::kDefaultEvaluationWindowLength;
  o["eval_windows"] = eval.max_windows();  // 0 = all, as in the pipeline.
  nlohmann::json tasks = nlohmann::json::array();
  for (int i = 0; i < eval.tasks_size(); ++i) {
    const care::v1::TaskSpec& t = eval.tasks(i);
    CARE_ASSIGN_OR_RETURN(
        std::string path,
        LocalPath(t.uri(), absl::StrCat("evaluation.tasks[", i, "].uri")));
    tasks.push_back({{"name", t.name()},
                     {"path", path},
                     {"format", t.format().empty() ? "auto" : t.format()},
                     {"limit", t.limit()}});
  }
  o["eval_tasks"] = std::move(tasks);
  // The held-out windows run when the allocation needs them or the spec
  // asks (convert::HeldoutReason).
  o["heldout_figures"] = eval.heldout_figures();
  o["eval_rolling_stride"] = eval.rolling_stride();
  o["eval_rolling_documents"] =
      eval.rolling_documents().empty() ? "whole" : eval.rolling_documents();
  // Unset: the source's dtype ("source", convert::ParseOutputDType).
  o["output_dtype"] = "source";
  if (spec.output_dtype() != care::v1::OUTPUT_DTYPE_UNSPECIFIED) {
    absl::string_view word = api::WordOf(api::kDtypeWords, spec.output_dtype());
    if (word.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("output_dtype: unknown value ", spec.output_dtype(),
                       " (allowed: unspecified, F32, F16, BF16)"));
    }
    o["output_dtype"] = std::string(word);
  }
  o["threads"] = threads;

  // The spec allows an existing empty output directory; and a retried
  // attempt may find the complete output of an earlier attempt of this job
  // that died before reporting (the writer renames into place atomically,
  // so a partial output never exists there).
  std::error_code error;
  const std::filesystem::path out(output);
  bool overwrite = false;
  if (std::filesystem::is_directory(out, error)) {
    overwrite = std::filesystem::is_empty(out, error) ||
                (job.attempt() > 1 &&
                 std::filesystem::exists(out / "care_report.json", error));
  }
  o["overwrite"] = overwrite;
  return o;
}

absl::StatusOr<care::v1::Report> ReportFromPipelineJson(
    const nlohmann::json& r, const care::v1::JobSpec& spec) {
  if (!r.is_object()) {
    return absl::InvalidArgumentError("pipeline report: not a JSON object");
  }
  care::v1::Report out;
  if (auto it = r.find("original"); it != r.end()) {
    CARE_RETURN_IF_ERROR(FillPerplexity(*it, out.mutable_original()));
  }
  if (auto it = r.find("converted"); it != r.end()) {
    CARE_RETURN_IF_ERROR(FillPerplexity(*it, out.mutable_converted()));
  }
  CARE_ASSIGN_OR_RETURN(int64_t before, Field<int64_t>(r, "kv_width_before"));
  CARE_ASSIGN_OR_RETURN(int64_t after, Field<int64_t>(r, "kv_width_after"));
  out.set_kv_width_before(before);
  out.set_kv_width_after(after);
  bool heldout_run = true;  // documents without the flag always ran them
  if (auto c = r.find("calibration"); c != r.end() && c->is_object()) {
    if (auto run = c->find("heldout_run"); run != c->end()) {
      if (!run->is_boolean()) {
        return absl::InvalidArgumentError(
            "pipeline report: field 'heldout_run' mistyped");
      }
      heldout_run = run->get<bool>();
    }
  }
  auto layers = r.find("layers");
  if (layers == r.end() || !layers->is_array()) {
    return absl::InvalidArgumentError("pipeline report: 'layers' missing");
  }
  for (const auto& layer : *layers) {
    if (!layer.is_object()) {
      return absl::InvalidArgumentError("pipeline report: layer not an object");
    }
    auto* dest = out.add_layers();
    CARE_ASSIGN_OR_RETURN(int64_t index, Field<int64_t>(layer, "layer"));
    CARE_ASSIGN_OR_RETURN(int64_t rank_k, Field<int64_t>(layer, "rank_k"));
    CARE_ASSIGN_OR_RETURN(int64_t rank_v, Field<int64_t>(layer, "rank_v"));
    // Held-out errors exist only when the job ran the held-out windows
    // (report "calibration.heldout_run"); otherwise 0, as the API says.
    double err_k = 0, err_v = 0;
    if (heldout_run) {
      CARE_ASSIGN_OR_RETURN(err_k, Field<double>(layer, "heldout_error_k"));
      CARE_ASSIGN_OR_RETURN(err_v, Field<double>(layer, "heldout_error_v"));
    }
    CARE_ASSIGN_OR_RETURN(double energy_k,
                          Field<double>(layer, "retained_energy_k"));
    CARE_ASSIGN_OR_RETURN(double energy_v,
                          Field<double>(layer, "retained_energy_v"));
    dest->set_layer(static_cast<int32_t>(index));
    dest->set_rank_k(static_cast<int32_t>(rank_k));
    dest->set_rank_v(static_cast<int32_t>(rank_v));
    dest->set_k_relative_error(err_k);
    dest->set_v_relative_error(err_v);
    dest->set_k_retained_energy(energy_k);
    dest->set_v_retained_energy(energy_v);
    // DeepSeek-V3 layout only (layer_reports.h).
    if (auto it = layer.find("rope_energy");
        it != layer.end() && it->is_number()) {
      dest->set_rope_energy(it->get<double>());
    }
    if (auto it = layer.find("nope_score_error");
        it != layer.end() && it->is_number()) {
      dest->set_nope_score_error(it->get<double>());
    }
  }
  if (auto timings = r.find("timings_s");
      timings != r.end() && timings->is_object()) {
    // A JSON object has no order: list the stages in pipeline order, summing
    // allocate into decomposing.
    std::map<care::v1::Stage, double> by_stage;
    for (const auto& [stage, seconds] : timings->items()) {
      if (seconds.is_number()) {
        by_stage[StageFromPipeline(stage)] += seconds.get<double>();
      }
    }
    for (const auto& [stage, seconds] : by_stage) {
      auto* dest = out.add_timings();
      dest->set_stage(stage);
      dest->set_seconds(seconds);
    }
  }
  if (auto rolling = r.find("rolling");
      rolling != r.end() && rolling->is_object()) {
    for (const char* which : {"original", "converted"}) {
      auto it = rolling->find(which);
      if (it == rolling->end() || !it->is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pipeline report: rolling has no ", which));
      }
      auto* dest = std::string(which) == "original"
                       ? out.mutable_rolling_original()
                       : out.mutable_rolling_converted();
      CARE_ASSIGN_OR_RETURN(int64_t docs, Field<int64_t>(*it, "documents"));
      CARE_ASSIGN_OR_RETURN(int64_t windows, Field<int64_t>(*it, "windows"));
      CARE_ASSIGN_OR_RETURN(int64_t preds, Field<int64_t>(*it, "predictions"));
      CARE_ASSIGN_OR_RETURN(double tok, Field<double>(*it, "token_perplexity"));
      CARE_ASSIGN_OR_RETURN(double word, Field<double>(*it, "word_perplexity"));
      CARE_ASSIGN_OR_RETURN(double byte, Field<double>(*it, "byte_perplexity"));
      CARE_ASSIGN_OR_RETURN(double bpb, Field<double>(*it, "bits_per_byte"));
      dest->set_documents(docs);
      dest->set_windows(windows);
      dest->set_predictions(preds);
      dest->set_token_perplexity(tok);
      dest->set_word_perplexity(word);
      dest->set_byte_perplexity(byte);
      dest->set_bits_per_byte(bpb);
    }
  }
  if (auto tasks = r.find("tasks"); tasks != r.end() && tasks->is_array()) {
    for (const auto& t : *tasks) {
      auto* dest = out.add_task_accuracy();
      CARE_ASSIGN_OR_RETURN(std::string name, Field<std::string>(t, "name"));
      CARE_ASSIGN_OR_RETURN(std::string format,
                            Field<std::string>(t, "format"));
      CARE_ASSIGN_OR_RETURN(int64_t items, Field<int64_t>(t, "items"));
      dest->set_name(name);
      dest->set_format(format);
      dest->set_items(items);
      for (const char* which : {"original", "converted"}) {
        auto it = t.find(which);
        if (it == t.end() || !it->is_object()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "pipeline report: task '", name, "' has no ", which));
        }
        auto* score = std::string(which) == "original"
                          ? dest->mutable_original()
                          : dest->mutable_converted();
        CARE_ASSIGN_OR_RETURN(double acc, Field<double>(*it, "acc"));
        CARE_ASSIGN_OR_RETURN(double acc_se, Field<double>(*it, "acc_stderr"));
        CARE_ASSIGN_OR_RETURN(double norm, Field<double>(*it, "acc_norm"));
        CARE_ASSIGN_OR_RETURN(double norm_se,
                              Field<double>(*it, "acc_norm_stderr"));
        score->set_acc(acc);
        score->set_acc_stderr(acc_se);
        score->set_acc_norm(norm);
        score->set_acc_norm_stderr(norm_se);
      }
    }
  }
  CARE_ASSIGN_OR_RETURN(std::string method, Field<std::string>(r, "method"));
  out.set_method(ApiMethod(method));
  out.set_rank_allocation(spec.rank_allocation() ==
                                  care::v1::RANK_ALLOCATION_UNSPECIFIED
                              ? api::kDefaultAllocation
                              : spec.rank_allocation());
  CARE_ASSIGN_OR_RETURN(double damping, Field<double>(r, "damping"));
  out.set_damping(damping);
  CARE_ASSIGN_OR_RETURN(std::string output,
                        Field<std::string>(r, "output_dir"));
  out.set_output_uri(output);
  if (auto it = r.find("deepseek_v3"); it != r.end() && it->is_object()) {
    const nlohmann::json& d = *it;
    out.set_output_layout(care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
    CARE_ASSIGN_OR_RETURN(int64_t rope, Field<int64_t>(d, "rope_dim"));
    CARE_ASSIGN_OR_RETURN(int64_t fold, Field<int64_t>(d, "freqfold"));
    CARE_ASSIGN_OR_RETURN(int64_t rank, Field<int64_t>(d, "kv_lora_rank"));
    CARE_ASSIGN_OR_RETURN(int64_t w0,
                          Field<int64_t>(d, "kv_width_per_layer_before"));
    CARE_ASSIGN_OR_RETURN(int64_t w1,
                          Field<int64_t>(d, "kv_width_per_layer_after"));
    CARE_ASSIGN_OR_RETURN(double nll,
                          Field<double>(d, "heldout_nll_partial_rope"));
    out.set_rope_dim(static_cast<int32_t>(rope));
    out.set_freqfold(static_cast<int32_t>(fold));
    out.set_kv_lora_rank(static_cast<int32_t>(rank));
    out.set_kv_width_per_layer_before(static_cast<int32_t>(w0));
    out.set_kv_width_per_layer_after(static_cast<int32_t>(w1));
    out.set_partial_rope_heldout_nll(nll);
    if (auto p = d.find("eval_ppl_partial_rope");
        p != d.end() && p->is_number()) {
      out.set_partial_rope_ppl(p->get<double>());
    }
    if (auto h = d.find("heal"); h != d.end() && h->is_object()) {
      CARE_RETURN_IF_ERROR(FillHealing(*h, out));
    }
  } else {
    out.set_output_layout(care::v1::OUTPUT_LAYOUT_LATENT);
  }
  return out;
}

}  // namespace care::worker
