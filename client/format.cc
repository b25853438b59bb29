#include "client/format.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/table.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "proto/api/names.h"

namespace care::client {
// carectl shows "-" for an unset stage.
std::string StageName(care::v1::Stage stage) {
  absl::string_view word = care::api::StageWord(stage);
  return word.empty() ? "-" : std::string(word);
}

using care::v1::Job;
using care::v1::JobEvent;
using care::v1::Progress;

absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text) {
  if (text == "table") return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("flag --output: expected table or json, got '", text, "'"));
}

namespace {

// The table's word, or `unset` when the value has none.
template <typename Enum, size_t N>
std::string WordOr(const care::api::EnumWord<Enum> (&table)[N], Enum value,
                   absl::string_view unset) {
  absl::string_view word = care::api::WordOf(table, value);
  return std::string(word.empty() ? unset : word);
}

}  // namespace

std::string StateName(care::v1::JobState state) {
  return absl::AsciiStrToUpper(WordOr(care::api::kStateWords, state, "-"));
}

std::string MethodName(care::v1::Method method) {
  return WordOr(care::api::kMethodWords, method, "care (default)");
}

std::string AllocationName(care::v1::RankAllocation allocation) {
  return WordOr(care::api::kAllocationWords, allocation, "uniform (default)");
}

std::string DtypeName(care::v1::OutputDtype dtype) {
  return WordOr(care::api::kDtypeWords, dtype, "same as source");
}

std::string DeviceName(care::v1::Device device) {
  return WordOr(care::api::kDeviceWords, device, "any");
}

std::string ReasonName(care::v1::FailureReason reason) {
  return WordOr(care::api::kReasonWords, reason, "unspecified");
}

std::string EventTypeName(care::v1::EventType type) {
  return WordOr(care::api::kEventTypeWords, type, "-");
}

std::string FormatTimestamp(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  absl::Time t = absl::FromUnixSeconds(time.seconds());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string HumanDuration(absl::Duration duration) {
  int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(duration));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, s % 3600 / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, s % 86400 / 3600);
}

std::string FormatProgress(const Progress& progress) {
  if (progress.stage() == care::v1::STAGE_UNSPECIFIED) return "-";
  std::string out(StageName(progress.stage()));
  if (progress.layer_count() > 0) {
    absl::StrAppend(&out, " layer ", progress.layer() + 1, "/",
                    progress.layer_count());
  }
  absl::StrAppend(&out, absl::StrFormat(" %.1f%%", 100 * progress.fraction()));
  return out;
}

namespace {

std::string FormatBudget(const care::v1::KvBudget& budget) {
  switch (budget.budget_case()) {
    case care::v1::KvBudget::kKvSaveFraction:
      return absl::StrFormat("save %.1f%% of the KV cache",
                             100 * budget.kv_save_fraction());
    case care::v1::KvBudget::kRankPerMatrix:
      return absl::StrCat("rank ", budget.rank_per_matrix(), " per matrix");
    default:
      return "-";
  }
}

std::string FormatLabels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  // Map iteration order is unspecified: sort for deterministic output.
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string FormatCalibration(const care::v1::JobSpec& spec) {
  const auto& c = spec.calibration();
  if (c.dataset_uri().empty()) return "";
  std::string out =
      absl::StrCat(c.dataset_uri(), ", ", c.samples(), " x ",
                   c.sequence_length(), " tokens, seed ", c.seed());
  if (c.sequential()) out += ", sequential";
  return out;
}

std::string FormatEvaluation(const care::v1::JobSpec& spec) {
  const auto& e = spec.evaluation();
  std::string tasks;
  if (e.tasks_size() > 0) {
    std::vector<std::string> names;
    for (const auto& t : e.tasks()) names.push_back(t.name());
    tasks = absl::StrCat("tasks ", absl::StrJoin(names, ", "));
  }
  if (e.dataset_uri().empty()) return tasks.empty() ? "none" : tasks;
  return absl::StrCat(
      e.dataset_uri(), ", windows of ", e.window_length(), " tokens, ",
      e.max_windows() == 0 ? std::string("all windows")
                           : absl::StrCat("at most ", e.max_windows()),
      e.prepend_bos() ? ", BOS" : "",
      e.rolling_stride() > 0
          ? absl::StrCat(
                ", rolling stride ", e.rolling_stride(),
                e.rolling_documents() == "wikitext" ? " (wikitext)" : "")
          : "",
      tasks.empty() ? "" : "; ", tasks);
}

std::string Num(double value) { return absl::StrFormat("%.6g", value); }

// Accuracy before/after per evaluation task, "acc±stderr".
void AppendTaskAccuracy(const care::v1::Report& report, std::string& out) {
  if (report.task_accuracy_size() == 0) return;
  auto score = [](double v, double se) {
    return absl::StrFormat("%.4f±%.4f", v, se);
  };
  Table table({"TASK", "FORMAT", "ITEMS", "ACC_ORIGINAL", "ACC_CONVERTED",
               "ACC_NORM_ORIGINAL", "ACC_NORM_CONVERTED"});
  for (const auto& t : report.task_accuracy()) {
    table.AddRow(
        {t.name(), t.format(), absl::StrCat(t.items()),
         score(t.original().acc(), t.original().acc_stderr()),
         score(t.converted().acc(), t.converted().acc_stderr()),
         score(t.original().acc_norm(), t.original().acc_norm_stderr()),
         score(t.converted().acc_norm(), t.converted().acc_norm_stderr())});
  }
  out += "\n";
  out += table.Render();
}

void AppendReport(const care::v1::Report& report, std::string& out) {
  KeyValueList kv;
  if (report.has_original() || report.has_converted()) {
    std::string ppl =
        absl::StrCat("original ", Num(report.original().ppl()), ", converted ",
                     Num(report.converted().ppl()));
    if (report.original().ppl() > 0) {
      absl::StrAppend(&ppl,
                      absl::StrFormat(" (x%.4f)", report.converted().ppl() /
                                                      report.original().ppl()));
    }
    absl::StrAppend(&ppl, " on ", report.converted().predictions(), " tokens");
    kv.Add("perplexity", ppl);
  }
  if (report.has_rolling_original() && report.has_rolling_converted()) {
    const auto& a = report.rolling_original();
    const auto& b = report.rolling_converted();
    kv.Add("rolling ppl", absl::StrCat("token ", Num(a.token_perplexity()),
                                       " -> ", Num(b.token_perplexity()),
                                       ", word ", Num(a.word_perplexity()),
                                       " -> ", Num(b.word_perplexity()),
                                       ", byte ", Num(a.byte_perplexity()),
                                       " -> ", Num(b.byte_perplexity()), " on ",
                                       a.documents(), " documents"));
  }
  std::string width = absl::StrCat(report.kv_width_before(), " -> ",
                                   report.kv_width_after(), " floats/token");
  if (report.kv_width_before() > 0) {
    absl::StrAppend(
        &width,
        absl::StrFormat(
            " (%.1f%% saved)",
            100.0 * (1.0 - static_cast<double>(report.kv_width_after()) /
                               report.kv_width_before())));
  }
  kv.Add("kv width", width);
  kv.Add("method",
         absl::StrCat(MethodName(report.method()), ", ",
                      AllocationName(report.rank_allocation()),
                      " allocation, damping ", Num(report.damping())));
  if (report.output_layout() == care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3) {
    kv.Add("layout", absl::StrCat("deepseek_v3: rope_dim ", report.rope_dim(),
                                  ", freqfold ", report.freqfold(),
                                  ", kv_lora_rank ", report.kv_lora_rank(),
                                  " (", report.kv_width_per_layer_before(),
                                  " -> ", report.kv_width_per_layer_after(),
                                  " floats/token/layer)"));
    kv.Add("partial rope only",
           absl::StrCat("held-out NLL ", Num(report.partial_rope_heldout_nll()),
                        report.has_partial_rope_ppl()
                            ? absl::StrCat(", perplexity ",
                                           Num(report.partial_rope_ppl()))
                            : std::string()));
    if (report.has_healing()) {
      const care::v1::HealingReport& h = report.healing();
      std::string layers;
      for (const care::v1::LayerReport& l : report.layers()) {
        absl::StrAppend(&layers, layers.empty() ? "" : ", ", l.layer(), ": ",
                        Num(l.heal_error_before()), " -> ",
                        Num(l.heal_error_after()));
      }
      kv.Add("healing",
             absl::StrCat(
                 h.inputs() == care::v1::HEALING_INPUTS_HEALED ? "healed"
                                                               : "original",
                 " inputs, ", h.train_tokens(), " tokens, ", Num(h.seconds()),
                 " s; held-out NLL ", Num(h.heldout_nll_before()), " -> ",
                 Num(h.heldout_nll_after())));
      kv.Add("healing error", layers);
    }
  }
  std::vector<std::string> timings;
  for (const auto& t : report.timings()) {
    timings.push_back(
        absl::StrFormat("%s %.2fs", StageName(t.stage()), t.seconds()));
  }
  kv.Add("timings", absl::StrJoin(timings, ", "));
  kv.Add("written to", report.output_uri());
  if (report.report_html_bytes() > 0) {
    kv.Add("html report", absl::StrCat(report.report_html_bytes(),
                                       " bytes stored (carectl report)"));
  }
  out += "\nreport:\n";
  out += kv.Render();
  if (report.layers_size() > 0) {
    // DeepSeek-V3: one joint latent, plus the rope split's numbers.
    const bool mla =
        report.output_layout() == care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3;
    std::vector<std::string> header = {"LAYER",     "RANK_K",    "RANK_V",
                                       "K_REL_ERR", "V_REL_ERR", "K_ENERGY",
                                       "V_ENERGY"};
    if (mla) header.insert(header.end(), {"ROPE_ENERGY", "NOPE_ERR"});
    Table table(header);
    for (const auto& l : report.layers()) {
      std::vector<std::string> row = {
          absl::StrCat(l.layer()),
          absl::StrCat(l.rank_k()),
          absl::StrCat(l.rank_v()),
          absl::StrFormat("%.4g", l.k_relative_error()),
          absl::StrFormat("%.4g", l.v_relative_error()),
          absl::StrFormat("%.4f", l.k_retained_energy()),
          absl::StrFormat("%.4f", l.v_retained_energy())};
      if (mla) {
        row.push_back(absl::StrFormat("%.4f", l.rope_energy()));
        row.push_back(l.has_nope_score_error()
                          ? absl::StrFormat("%.4g", l.nope_score_error())
                          : "-");
      }
      table.AddRow(std::move(row));
    }
    out += "\n";
    out += table.Render();
  }
  AppendTaskAccuracy(report, out);
}

}  // namespace

std::string FormatJobTable(const Job& job) {
  const care::v1::JobSpec& spec = job.spec();
  KeyValueList kv;
  kv.Add("id", job.id());
  kv.Add("state", StateName(job.state()));
  if (job.state() == care::v1::JOB_STATE_RUNNING ||
      job.state() == care::v1::JOB_STATE_CANCELLING) {
    kv.Add("progress", FormatProgress(job.progress()));
  }
  if (job.attempt() > 0) {
    kv.Add("attempt", absl::StrCat(job.attempt(), " of ", spec.max_attempts()));
  }
  kv.Add("worker", job.worker_id());
  if (job.state() == care::v1::JOB_STATE_QUEUED) {
    kv.Add("queued", job.queue_reason());
  }
  for (const care::v1::Attempt& a : job.attempts()) {
    kv.Add(absl::StrCat("attempt ", a.attempt()),
           absl::StrCat(a.worker_id(), " on ", a.device_name(), ", ",
                        FormatTimestamp(a.lease_time())));
  }
  if (job.has_failure()) {
    kv.Add("failure", absl::StrCat(ReasonName(job.failure().reason()), ": ",
                                   job.failure().message()));
  }
  kv.Add("model", spec.model_uri());
  kv.Add("output", spec.output_uri());
  kv.Add("budget", spec.kv_lora_rank() > 0
                       ? absl::StrCat("kv_lora_rank ", spec.kv_lora_rank())
                       : FormatBudget(spec.kv_budget()));
  if (spec.output_layout() == care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3) {
    auto or_auto = [](int32_t v) {
      return v == 0 ? std::string("auto") : absl::StrCat(v);
    };
    kv.Add("layout",
           absl::StrCat("deepseek_v3, rope_dim ", or_auto(spec.rope_dim()),
                        ", freqfold ", or_auto(spec.freqfold()),
                        spec.no_kv_balance() ? ", no K/V balance" : ""));
    if (spec.healing().mode() == care::v1::HEALING_MODE_LOCAL) {
      const care::v1::HealingSpec& h = spec.healing();
      kv.Add("healing",
             absl::StrCat(
                 "local, ",
                 h.inputs() == care::v1::HEALING_INPUTS_HEALED ? "healed"
                                                               : "original",
                 " inputs",
                 h.tokens() > 0 ? absl::StrCat(", ", h.tokens(), " tokens")
                                : std::string(),
                 h.steps() > 0 ? absl::StrCat(", ", h.steps(), " steps")
                               : std::string(),
                 h.dataset_uri().empty()
                     ? std::string()
                     : absl::StrCat(", data ", h.dataset_uri())));
    }
  }
  kv.Add("method",
         absl::StrCat(MethodName(spec.method()), ", ",
                      AllocationName(spec.rank_allocation()), " allocation"));
  kv.Add("calibration", FormatCalibration(spec));
  kv.Add("evaluation", FormatEvaluation(spec));
  if (spec.has_damping()) kv.Add("damping", Num(spec.damping()));
  kv.Add("dtype", DtypeName(spec.output_dtype()));
  kv.Add("device", DeviceName(spec.device()));
  kv.Add("priority", absl::StrCat(spec.priority()));
  kv.Add("labels", FormatLabels(spec.labels()));
  kv.Add("request id", spec.request_id());
  kv.Add("created", FormatTimestamp(job.create_time()));
  if (job.has_start_time())
    kv.Add("started", FormatTimestamp(job.start_time()));
  if (job.has_update_time()) {
    kv.Add("updated", FormatTimestamp(job.update_time()));
  }
  if (job.has_end_time()) kv.Add("ended", FormatTimestamp(job.end_time()));
  std::string out = kv.Render();
  if (job.has_report()) AppendReport(job.report(), out);
  return out;
}

// The device the job requires, and where its last attempt ran: "cuda"
// (never leased), "cuda:0" (a cuda job on cuda:0), "any on cpu".
std::string FormatJobDevice(const Job& job) {
  const std::string required = DeviceName(job.spec().device());
  if (job.attempts().empty()) return required;
  const std::string& name = job.attempts().rbegin()->device_name();
  const std::string ran = name.substr(0, name.find(' '));
  if (ran.substr(0, ran.find(':')) == required) return ran;
  return absl::StrCat(required, " on ", ran);
}

std::string FormatJobListTable(const care::v1::ListJobsResponse& response) {
  Table table({"ID", "STATE", "PROGRESS", "ATTEMPT", "DEVICE", "PRIORITY",
               "CREATED", "MODEL", "LABELS"});
  for (const Job& job : response.jobs()) {
    bool active = job.state() == care::v1::JOB_STATE_RUNNING ||
                  job.state() == care::v1::JOB_STATE_CANCELLING;
    table.AddRow({job.id(), StateName(job.state()),
                  active ? FormatProgress(job.progress()) : "-",
                  absl::StrCat(job.attempt()), FormatJobDevice(job),
                  absl::StrCat(job.spec().priority()),
                  FormatTimestamp(job.create_time()), job.spec().model_uri(),
                  FormatLabels(job.spec().labels())});
  }
  return table.Render();
}

namespace {

std::string EventDetail(const JobEvent& event) {
  std::vector<std::string> parts;
  if (event.type() == care::v1::EVENT_TYPE_LAYER_DONE && event.has_layer()) {
    const auto& l = event.layer();
    parts.push_back(absl::StrFormat(
        "layer %d rank_k %d rank_v %d k_err %.4g v_err %.4g", l.layer(),
        l.rank_k(), l.rank_v(), l.k_relative_error(), l.v_relative_error()));
  } else if (event.has_progress() &&
             event.progress().stage() != care::v1::STAGE_UNSPECIFIED) {
    parts.push_back(FormatProgress(event.progress()));
  }
  if (!event.message().empty()) parts.push_back(event.message());
  return absl::StrJoin(parts, "  ");
}

}  // namespace

std::string FormatEventsTable(const care::v1::ListJobEventsResponse& events) {
  Table table({"SEQ", "TIME", "TYPE", "STATE", "ATTEMPT", "DETAIL"});
  for (const JobEvent& e : events.events()) {
    table.AddRow({absl::StrCat(e.sequence()), FormatTimestamp(e.time()),
                  EventTypeName(e.type()), StateName(e.state()),
                  absl::StrCat(e.attempt()), EventDetail(e)});
  }
  return table.Render();
}

std::string FormatEventLine(const JobEvent& event) {
  std::string line =
      absl::StrCat(FormatTimestamp(event.time()), " ", event.job_id(), " #",
                   event.sequence(), " ", EventTypeName(event.type()), " ",
                   StateName(event.state()));
  if (event.attempt() > 0) absl::StrAppend(&line, " attempt ", event.attempt());
  std::string detail = EventDetail(event);
  if (!detail.empty()) absl::StrAppend(&line, "  ", detail);
  return line;
}

std::string FormatOutcomeLine(const Job& job) {
  std::string line = absl::StrCat(job.id(), " ", StateName(job.state()));
  if (job.has_start_time() && job.has_end_time()) {
    absl::Duration took =
        absl::Seconds(job.end_time().seconds() - job.start_time().seconds());
    absl::StrAppend(&line, " after ", HumanDuration(took));
  }
  if (job.attempt() > 1)
    absl::StrAppend(&line, " (attempt ", job.attempt(), ")");
  if (job.state() == care::v1::JOB_STATE_FAILED) {
    absl::StrAppend(&line, ": ", ReasonName(job.failure().reason()), ": ",
                    job.failure().message());
  } else if (job.state() == care::v1::JOB_STATE_SUCCEEDED && job.has_report()) {
    const auto& r = job.report();
    if (r.has_original() || r.has_converted()) {
      absl::StrAppend(&line, ": perplexity ", Num(r.original().ppl()), " -> ",
                      Num(r.converted().ppl()));
    }
    absl::StrAppend(&line, r.has_original() || r.has_converted() ? ", " : ": ",
                    "KV width ", r.kv_width_before(), " -> ",
                    r.kv_width_after(), ", written to ", r.output_uri());
  }
  return line;
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  // Zeros too (layer 0, attempt 0): pipelines should not guess defaults.
  options.always_print_primitive_fields = true;
  std::string out;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &out, options);
  // Only fails for messages that cannot exist here (Any of unknown type).
  if (!status.ok())
    return absl::StrCat("{\"error\": \"", status.ToString(), "\"}");
  if (pretty && !out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::optional<absl::Duration> EstimateRemaining(double fraction_at_start,
                                                absl::Time start,
                                                double fraction_now,
                                                absl::Time now) {
  double done = fraction_now - fraction_at_start;
  absl::Duration elapsed = now - start;
  if (done <= 1e-6 || elapsed <= absl::ZeroDuration()) return std::nullopt;
  double rest = std::clamp(1.0 - fraction_now, 0.0, 1.0);
  return elapsed * (rest / done);
}

std::string FormatProgressBar(const Progress& progress,
                              std::optional<absl::Duration> remaining,
                              int bar_width) {
  double fraction = std::clamp(progress.fraction(), 0.0, 1.0);
  int filled = static_cast<int>(std::floor(fraction * bar_width));
  std::string line = "[";
  line.append(filled, '#');
  line.append(bar_width - filled, '.');
  absl::StrAppend(&line, "] ", absl::StrFormat("%5.1f%%", 100 * fraction));
  if (progress.stage() != care::v1::STAGE_UNSPECIFIED) {
    absl::StrAppend(&line, "  ", StageName(progress.stage()));
  }
  if (progress.layer_count() > 0) {
    absl::StrAppend(&line, "  layer ", progress.layer() + 1, "/",
                    progress.layer_count());
  }
  absl::StrAppend(&line, "  ETA ",
                  remaining ? HumanDuration(*remaining) : std::string("--"));
  return line;
}

}  // namespace care::client
