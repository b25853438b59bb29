#include "proto/api/spec_validation.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/uri.h"

namespace care::api {
namespace {

using care::v1::JobSpec;

absl::Status Invalid(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t lo,
                        int64_t hi) {
  if (value < lo || value > hi) {
    return Invalid(
        field, absl::StrCat("must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// Zero means "use the default"; anything else must be within [lo, hi].
absl::Status CheckOptionalRange(absl::string_view field, int64_t value,
                                int64_t lo, int64_t hi) {
  if (value == 0) return absl::OkStatus();
  return CheckRange(field, value, lo, hi);
}

absl::Status CheckUri(absl::string_view field, const std::string& uri,
                      bool allow_hub) {
  if (uri.empty()) return Invalid(field, "required");
  if (uri.size() > 4096) return Invalid(field, "longer than 4096 bytes");
  absl::StatusOr<care::Uri> parsed = care::ParseUri(uri, allow_hub);
  if (!parsed.ok()) return Invalid(field, parsed.status().message());
  return absl::OkStatus();
}

absl::Status CheckTextField(absl::string_view field, const std::string& name) {
  if (name.size() > 128) return Invalid(field, "longer than 128 bytes");
  return absl::OkStatus();
}

bool IsLabelKey(const std::string& key) {
  if (key.empty() || key.size() > 63) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!alnum(key.front()) || !alnum(key.back())) return false;
  for (char c : key) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool DeepseekV3(const JobSpec& spec) {
  return spec.output_layout() == care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3;
}

absl::Status ValidateBudget(const JobSpec& spec) {
  if (spec.kv_lora_rank() != 0 && DeepseekV3(spec)) {
    if (spec.has_kv_budget()) {
      return Invalid("kv_budget",
                     "must be unset when kv_lora_rank gives the latent width");
    }
    return absl::OkStatus();
  }
  if (!spec.has_kv_budget()) return Invalid("kv_budget", "required");
  const auto& b = spec.kv_budget();
  switch (b.budget_case()) {
    case care::v1::KvBudget::kKvSaveFraction: {
      double f = b.kv_save_fraction();
      if (!std::isfinite(f) || f < 0.0 || f >= 1.0) {
        return Invalid("kv_budget.kv_save_fraction",
                       absl::StrCat("must be in [0, 1), got ", f));
      }
      return absl::OkStatus();
    }
    case care::v1::KvBudget::kRankPerMatrix:
      return CheckRange("kv_budget.rank_per_matrix", b.rank_per_matrix(), 1,
                        1 << 20);
    case care::v1::KvBudget::BUDGET_NOT_SET:
      break;
  }
  return Invalid("kv_budget", "set one of kv_save_fraction or rank_per_matrix");
}

absl::Status ValidateEnums(const JobSpec& spec) {
  if (!care::v1::Method_IsValid(spec.method())) {
    return Invalid("method", absl::StrCat("unknown value ", spec.method()));
  }
  if (!care::v1::RankAllocation_IsValid(spec.rank_allocation())) {
    return Invalid("rank_allocation",
                   absl::StrCat("unknown value ", spec.rank_allocation()));
  }
  if (!care::v1::OutputDtype_IsValid(spec.output_dtype())) {
    return Invalid("output_dtype",
                   absl::StrCat("unknown value ", spec.output_dtype()));
  }
  if (!care::v1::OutputLayout_IsValid(spec.output_layout())) {
    return Invalid("output_layout",
                   absl::StrCat("unknown value ", spec.output_layout()));
  }
  if (!care::v1::Device_IsValid(spec.device())) {
    return Invalid("device",
                   absl::StrCat("unknown value ", spec.device(),
                                " (allowed: DEVICE_ANY, DEVICE_CPU, "
                                "DEVICE_CUDA; unset means DEVICE_ANY)"));
  }
  return absl::OkStatus();
}

// The DeepSeek-V3 layout's fields (rope_dim, freqfold, kv_lora_rank,
// no_kv_balance): one rule per field, each naming it.
absl::Status ValidateRopeDim(const JobSpec& spec) {
  if (spec.rope_dim() == 0) return absl::OkStatus();
  if (!DeepseekV3(spec)) {
    return Invalid("rope_dim", "applies to OUTPUT_LAYOUT_DEEPSEEK_V3 only");
  }
  if (spec.rope_dim() % 2 != 0) {
    return Invalid("rope_dim",
                   absl::StrCat("must be even, got ", spec.rope_dim()));
  }
  return CheckRange("rope_dim", spec.rope_dim(), 2, 1024);
}

absl::Status ValidateFreqfold(const JobSpec& spec) {
  if (spec.freqfold() == 0) return absl::OkStatus();
  if (!DeepseekV3(spec)) {
    return Invalid("freqfold", "applies to OUTPUT_LAYOUT_DEEPSEEK_V3 only");
  }
  return CheckRange("freqfold", spec.freqfold(), 1, 64);
}

absl::Status ValidateKvLoraRank(const JobSpec& spec) {
  if (spec.kv_lora_rank() == 0) return absl::OkStatus();
  if (!DeepseekV3(spec)) {
    return Invalid("kv_lora_rank", "applies to OUTPUT_LAYOUT_DEEPSEEK_V3 only");
  }
  return CheckRange("kv_lora_rank", spec.kv_lora_rank(), 1, 65536);
}

absl::Status ValidateNoKvBalance(const JobSpec& spec) {
  if (spec.no_kv_balance() && !DeepseekV3(spec)) {
    return Invalid("no_kv_balance",
                   "applies to OUTPUT_LAYOUT_DEEPSEEK_V3 only");
  }
  return absl::OkStatus();
}

// kv_a_layernorm's linear regime scales the latent far below f16's range.
absl::Status ValidateLayoutDtype(const JobSpec& spec) {
  if (DeepseekV3(spec) && spec.output_dtype() == care::v1::OUTPUT_DTYPE_F16) {
    return Invalid("output_dtype",
                   "OUTPUT_DTYPE_F16 cannot hold OUTPUT_LAYOUT_DEEPSEEK_V3 "
                   "(the scaled latent underflows); use BF16 or F32");
  }
  return absl::OkStatus();
}

bool NeedsCalibration(const JobSpec& spec) {
  return spec.method() != care::v1::METHOD_SVD ||
         spec.rank_allocation() == care::v1::RANK_ALLOCATION_AUTO ||
         DeepseekV3(spec);
}

absl::Status ValidateCalibration(const JobSpec& spec) {
  const auto& c = spec.calibration();
  if (c.dataset_uri().empty()) {
    if (NeedsCalibration(spec)) {
      return Invalid("calibration.dataset_uri",
                     "required unless method is METHOD_SVD with a non-auto "
                     "rank allocation and the latent layout");
    }
    return absl::OkStatus();
  }
  absl::Status s = CheckUri("calibration.dataset_uri", c.dataset_uri(),
                            /*allow_hub=*/false);
  if (!s.ok()) return s;
  s = CheckOptionalRange("calibration.samples", c.samples(), 1, 1 << 20);
  if (!s.ok()) return s;
  s = CheckOptionalRange("calibration.sequence_length", c.sequence_length(), 2,
                         131072);
  if (!s.ok()) return s;
  return CheckTextField("calibration.text_field", c.text_field());
}

absl::Status ValidateEvaluation(const JobSpec& spec) {
  const auto& e = spec.evaluation();
  // The held-out windows are the last part of the calibration range.
  if (e.heldout_figures() && spec.calibration().dataset_uri().empty()) {
    return Invalid("evaluation.heldout_figures",
                   "requires calibration.dataset_uri (the held-out windows "
                   "are the end of the calibration data)");
  }
  if (e.dataset_uri().empty()) {
    if (e.window_length() != 0 || e.max_windows() != 0 ||
        e.rolling_stride() != 0) {
      return Invalid("evaluation.dataset_uri",
                     "required when window_length, max_windows or "
                     "rolling_stride is set");
    }
    return absl::OkStatus();
  }
  absl::Status s = CheckUri("evaluation.dataset_uri", e.dataset_uri(),
                            /*allow_hub=*/false);
  if (!s.ok()) return s;
  s = CheckOptionalRange("evaluation.window_length", e.window_length(), 2,
                         131072);
  if (!s.ok()) return s;
  s = CheckRange("evaluation.max_windows", e.max_windows(), 0, 1000000);
  if (!s.ok()) return s;
  const int window = e.window_length() > 0 ? e.window_length()
                                           : kDefaultEvaluationWindowLength;
  s = CheckRange("evaluation.rolling_stride", e.rolling_stride(), 0, window);
  if (!s.ok()) return s;
  if (e.rolling_documents() != "" && e.rolling_documents() != "whole" &&
      e.rolling_documents() != "wikitext") {
    return Invalid("evaluation.rolling_documents",
                   absl::StrCat("unknown value '", e.rolling_documents(),
                                "' (allowed: whole, wikitext)"));
  }
  return CheckTextField("evaluation.text_field", e.text_field());
}

// HealingSpec (docs/conversion.md "Healing"): DeepSeek-V3 layout only.
absl::Status ValidateHealing(const JobSpec& spec) {
  const care::v1::HealingSpec& h = spec.healing();
  if (!care::v1::HealingMode_IsValid(h.mode())) {
    return Invalid("healing.mode", absl::StrCat("unknown value ", h.mode()));
  }
  if (!care::v1::HealingInputs_IsValid(h.inputs())) {
    return Invalid("healing.inputs",
                   absl::StrCat("unknown value ", h.inputs()));
  }
  const bool local = h.mode() == care::v1::HEALING_MODE_LOCAL;
  if (!local) {
    if (!h.dataset_uri().empty() || h.tokens() != 0 || h.steps() != 0 ||
        h.inputs() != care::v1::HEALING_INPUTS_UNSPECIFIED) {
      return Invalid("healing",
                     "fields other than mode need HEALING_MODE_LOCAL");
    }
    return absl::OkStatus();
  }
  if (!DeepseekV3(spec)) {
    return Invalid("healing.mode",
                   "HEALING_MODE_LOCAL applies to OUTPUT_LAYOUT_DEEPSEEK_V3 "
                   "only");
  }
  if (!h.dataset_uri().empty()) {
    absl::Status s =
        CheckUri("healing.dataset_uri", h.dataset_uri(), /*allow_hub=*/false);
    if (!s.ok()) return s;
  }
  if (h.tokens() < 0 || h.tokens() > 1000000000) {
    return Invalid(
        "healing.tokens",
        absl::StrCat("must be in [0, 1000000000], got ", h.tokens()));
  }
  return CheckRange("healing.steps", h.steps(), 0, 100000);
}

constexpr const char* kTaskFormats[] = {
    "",     "auto",       "generic", "arc",       "hellaswag",
    "piqa", "winogrande", "boolq",   "openbookqa"};

// The report name of a task without one: the file's stem.
std::string TaskStem(const std::string& uri) {
  std::string base = uri.substr(uri.find_last_of('/') + 1);
  const size_t dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

bool IsTaskName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateTasks(const JobSpec& spec) {
  const auto& tasks = spec.evaluation().tasks();
  if (tasks.size() > 16) {
    return Invalid("evaluation.tasks",
                   absl::StrCat("at most 16 tasks, got ", tasks.size()));
  }
  std::set<std::string> names;
  for (int i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    const std::string at = absl::StrCat("evaluation.tasks[", i, "]");
    absl::Status s = CheckUri(at + ".uri", t.uri(), /*allow_hub=*/false);
    if (!s.ok()) return s;
    const std::string name = t.name().empty() ? TaskStem(t.uri()) : t.name();
    if (!IsTaskName(name)) {
      return Invalid(at + ".name",
                     absl::StrCat("'", name,
                                  "' must be 1-64 bytes of [A-Za-z0-9_.-] "
                                  "(unset: the file's stem)"));
    }
    if (!names.insert(name).second) {
      return Invalid(at + ".name",
                     absl::StrCat("'", name, "' is used by another task"));
    }
    bool known = false;
    for (const char* f : kTaskFormats) known = known || t.format() == f;
    if (!known) {
      return Invalid(at + ".format",
                     absl::StrCat("unknown format '", t.format(),
                                  "' (allowed: auto, generic, arc, hellaswag, "
                                  "piqa, winogrande, boolq, openbookqa)"));
    }
    s = CheckRange(at + ".limit", t.limit(), 0, 1000000);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const JobSpec& spec) {
  if (spec.labels_size() > 32) {
    return Invalid("labels",
                   absl::StrCat("at most 32 labels, got ", spec.labels_size()));
  }
  for (const auto& [key, value] : spec.labels()) {
    if (!IsLabelKey(key)) {
      return Invalid(absl::StrCat("labels[", key, "]"),
                     "key must match [a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?");
    }
    if (value.size() > 256) {
      return Invalid(absl::StrCat("labels[", key, "]"),
                     "value longer than 256 bytes");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(const std::string& id) {
  if (id.size() > 128) return Invalid("request_id", "longer than 128 bytes");
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return Invalid("request_id", "must be printable ASCII without spaces");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec) {
  for (auto check :
       {+[](const JobSpec& s) {
          return CheckUri("model_uri", s.model_uri(), true);
        },
        +[](const JobSpec& s) {
          return CheckUri("output_uri", s.output_uri(), false);
        },
        &ValidateBudget, &ValidateEnums, &ValidateCalibration,
        &ValidateEvaluation, &ValidateTasks, &ValidateLabels, &ValidateRopeDim,
        &ValidateFreqfold, &ValidateKvLoraRank, &ValidateNoKvBalance,
        &ValidateLayoutDtype, &ValidateHealing,
        +[](const JobSpec& s) { return ValidateRequestId(s.request_id()); }}) {
    absl::Status s = check(spec);
    if (!s.ok()) return s;
  }
  if (spec.has_damping() && (!std::isfinite(spec.damping()) ||
                             spec.damping() < 0.0 || spec.damping() > 1.0)) {
    return Invalid("damping",
                   absl::StrCat("must be in [0, 1], got ", spec.damping()));
  }
  absl::Status s = CheckRange("priority", spec.priority(), -1000, 1000);
  if (!s.ok()) return s;
  return CheckOptionalRange("max_attempts", spec.max_attempts(), 1, 20);
}

void ApplyJobSpecDefaults(JobSpec& spec) {
  if (spec.method() == care::v1::METHOD_UNSPECIFIED) {
    spec.set_method(kDefaultMethod);
  }
  if (spec.rank_allocation() == care::v1::RANK_ALLOCATION_UNSPECIFIED) {
    spec.set_rank_allocation(kDefaultAllocation);
  }
  if (spec.output_layout() == care::v1::OUTPUT_LAYOUT_UNSPECIFIED) {
    spec.set_output_layout(care::v1::OUTPUT_LAYOUT_LATENT);
  }
  if (spec.device() == care::v1::DEVICE_UNSPECIFIED) {
    spec.set_device(care::v1::DEVICE_ANY);
  }
  if (!spec.has_damping()) spec.set_damping(kDefaultDamping);
  if (spec.max_attempts() == 0) spec.set_max_attempts(kDefaultMaxAttempts);
  if (!spec.calibration().dataset_uri().empty()) {
    auto* c = spec.mutable_calibration();
    if (c->samples() == 0) c->set_samples(kDefaultCalibrationSamples);
    if (c->sequence_length() == 0) {
      c->set_sequence_length(kDefaultCalibrationSequenceLength);
    }
    if (c->text_field().empty()) c->set_text_field(kDefaultTextField);
  }
  for (auto& t : *spec.mutable_evaluation()->mutable_tasks()) {
    if (t.name().empty()) t.set_name(TaskStem(t.uri()));
    if (t.format().empty()) t.set_format("auto");
  }
  if (!spec.evaluation().dataset_uri().empty()) {
    auto* e = spec.mutable_evaluation();
    if (e->window_length() == 0) {
      e->set_window_length(kDefaultEvaluationWindowLength);
    }
    if (e->text_field().empty()) e->set_text_field(kDefaultTextField);
  }
  if (spec.healing().mode() == care::v1::HEALING_MODE_LOCAL) {
    auto* h = spec.mutable_healing();
    if (h->tokens() == 0) h->set_tokens(kDefaultHealingTokens);
    if (h->steps() == 0) h->set_steps(kDefaultHealingSteps);
    if (h->inputs() == care::v1::HEALING_INPUTS_UNSPECIFIED) {
      h->set_inputs(care::v1::HEALING_INPUTS_ORIGINAL);
    }
  }
}

}  // namespace care::api
