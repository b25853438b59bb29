#include "client/spec_flags.h"

#include <climits>
#include <cstdint>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "proto/api/names.h"

namespace care::client {

const std::set<std::string>& SpecFlagNames() {
  static const auto* names = new std::set<std::string>{
      "spec",          "model",         "out",          "kv-save",
      "rank",          "method",        "allocation",   "calib",
      "calib-samples", "calib-seq-len", "seed",         "calib-text-field",
      "eval",          "eval-seq-len",  "eval-windows", "eval-text-field",
      "damping",       "dtype",         "priority",     "request-id",
      "device",        "max-attempts",  "layout",       "rope-dim",
      "freqfold",      "kv-lora-rank",  "heal",         "heal-data",
      "heal-tokens",   "heal-steps",    "heal-inputs"};
  return *names;
}

const std::set<std::string>& SpecBoolFlagNames() {
  static const auto* names =
      new std::set<std::string>{"sequential", "eval-bos", "no-kv-balance"};
  return *names;
}

absl::StatusOr<std::vector<std::string>> ExtractRepeated(
    std::vector<std::string>& args, absl::string_view name) {
  const std::string flag = absl::StrCat("--", name);
  const std::string prefix = absl::StrCat(flag, "=");
  std::vector<std::string> values;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {  // Everything after is positional.
      rest.insert(rest.end(), args.begin() + i, args.end());
      break;
    }
    if (args[i] == flag) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag ", flag, " needs a value"));
      }
      values.push_back(args[++i]);
    } else if (absl::StartsWith(args[i], prefix)) {
      values.push_back(args[i].substr(prefix.size()));
    } else {
      rest.push_back(args[i]);
    }
  }
  args = std::move(rest);
  return values;
}

absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(
    absl::string_view text, absl::string_view flag) {
  size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", flag, ": expected key=value, got '", text, "'"));
  }
  return std::make_pair(std::string(text.substr(0, eq)),
                        std::string(text.substr(eq + 1)));
}

namespace {

// `text` (any case) looked up in the API's word table (api/names.h), plus
// `extra` words only carectl accepts; the error lists every word.
template <typename Enum, size_t N>
absl::StatusOr<Enum> Lookup(
    absl::string_view text, absl::string_view flag,
    const care::api::EnumWord<Enum> (&table)[N],
    std::initializer_list<care::api::EnumWord<Enum>> extra = {}) {
  const std::string lower = absl::AsciiStrToLower(text);
  std::vector<std::string> words;
  for (const care::api::EnumWord<Enum>& e : extra) {
    if (lower == e.word) return e.value;
    words.emplace_back(e.word);
  }
  for (const care::api::EnumWord<Enum>& e : table) {
    if (lower == e.word) return e.value;
    words.emplace_back(e.word);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", flag, ": expected one of ",
                   absl::StrJoin(words, ", "), "; got '", text, "'"));
}

// Local paths are resolved here: the server needs absolute ones, and a
// relative path on carectl's command line means "relative to me".
std::string AbsoluteIfLocal(const std::string& uri) {
  if (uri.empty() || uri[0] == '/' || absl::StrContains(uri, "://")) {
    return uri;
  }
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::absolute(uri, error);
  return error ? uri : absolute.lexically_normal().string();
}

}  // namespace

absl::StatusOr<care::v1::Method> ParseMethod(absl::string_view text) {
  return Lookup(text, "method", care::api::kMethodWords);
}

absl::StatusOr<care::v1::OutputLayout> ParseLayout(absl::string_view text) {
  return Lookup(text, "layout", care::api::kLayoutWords);
}

absl::StatusOr<care::v1::RankAllocation> ParseAllocation(
    absl::string_view text) {
  return Lookup(text, "allocation", care::api::kAllocationWords);
}

absl::StatusOr<care::v1::OutputDtype> ParseDtype(absl::string_view text) {
  return Lookup(text, "dtype", care::api::kDtypeWords,
                {{care::v1::OUTPUT_DTYPE_UNSPECIFIED, "same"}});
}

absl::StatusOr<care::v1::Device> ParseDevice(absl::string_view text) {
  return Lookup(text, "device", care::api::kDeviceWords);
}

absl::StatusOr<care::v1::JobState> ParseState(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(text);
  if (absl::StartsWith(lower, "job_state_")) lower = lower.substr(10);
  return Lookup(lower, "state", care::api::kStateWords);
}

void ExpandShortFlags(std::vector<std::string>& args) {
  for (std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "-f") arg = "--spec";
  }
}

absl::StatusOr<care::v1::JobSpec> SpecFromFlags(
    const Flags& flags, const std::vector<std::string>& labels) {
  care::v1::JobSpec spec;
  if (auto file = flags.String("spec")) {
    CARE_ASSIGN_OR_RETURN(spec, ReadSpecFile(*file));
  }
  if (auto v = flags.String("model")) spec.set_model_uri(AbsoluteIfLocal(*v));
  if (auto v = flags.String("out")) spec.set_output_uri(AbsoluteIfLocal(*v));
  if (flags.Has("kv-save") && flags.Has("rank")) {
    return absl::InvalidArgumentError(
        "flags --kv-save and --rank are alternatives: give one");
  }
  if (flags.Has("kv-save")) {
    CARE_ASSIGN_OR_RETURN(double save, flags.DoubleOr("kv-save", 0));
    spec.mutable_kv_budget()->set_kv_save_fraction(save);
  }
  if (flags.Has("rank")) {
    CARE_ASSIGN_OR_RETURN(int64_t rank, flags.IntOr("rank", 0));
    if (rank < 1 || rank > (1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --rank: must be >= 1, got ", rank));
    }
    spec.mutable_kv_budget()->set_rank_per_matrix(static_cast<int32_t>(rank));
  }
  if (auto v = flags.String("method")) {
    CARE_ASSIGN_OR_RETURN(auto method, ParseMethod(*v));
    spec.set_method(method);
  }
  if (auto v = flags.String("allocation")) {
    CARE_ASSIGN_OR_RETURN(auto allocation, ParseAllocation(*v));
    spec.set_rank_allocation(allocation);
  }
  if (auto v = flags.String("dtype")) {
    CARE_ASSIGN_OR_RETURN(auto dtype, ParseDtype(*v));
    spec.set_output_dtype(dtype);
  }
  if (auto v = flags.String("device")) {
    CARE_ASSIGN_OR_RETURN(auto device, ParseDevice(*v));
    spec.set_device(device);
  }
  if (auto v = flags.String("layout")) {
    CARE_ASSIGN_OR_RETURN(auto layout, ParseLayout(*v));
    spec.set_output_layout(layout);
  }
  if (flags.Bool("no-kv-balance")) spec.set_no_kv_balance(true);
  if (auto v = flags.String("heal")) {
    if (*v != "local" && *v != "none") {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --heal: expects local or none, got '", *v, "'"));
    }
    spec.mutable_healing()->set_mode(*v == "local"
                                         ? care::v1::HEALING_MODE_LOCAL
                                         : care::v1::HEALING_MODE_NONE);
  }
  if (auto v = flags.String("heal-inputs")) {
    if (*v != "original" && *v != "healed") {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag --heal-inputs: expects original or healed, got '", *v, "'"));
    }
    spec.mutable_healing()->set_inputs(*v == "healed"
                                           ? care::v1::HEALING_INPUTS_HEALED
                                           : care::v1::HEALING_INPUTS_ORIGINAL);
  }
  if (auto v = flags.String("heal-data")) {
    spec.mutable_healing()->set_dataset_uri(AbsoluteIfLocal(*v));
  }
  if (flags.Has("heal-tokens")) {
    CARE_ASSIGN_OR_RETURN(int64_t tokens, flags.IntOr("heal-tokens", 0));
    spec.mutable_healing()->set_tokens(tokens);
  }

  // Integer flags whose range ValidateJobSpec checks; here only int32 fit.
  auto int32_flag = [&](const char* name, auto setter) -> absl::Status {
    if (!flags.Has(name)) return absl::OkStatus();
    CARE_ASSIGN_OR_RETURN(int64_t value, flags.IntOr(name, 0));
    if (value < INT32_MIN || value > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, ": out of range, got ", value));
    }
    setter(static_cast<int32_t>(value));
    return absl::OkStatus();
  };
  auto* calib = spec.mutable_calibration();
  auto* eval = spec.mutable_evaluation();
  if (auto v = flags.String("calib"))
    calib->set_dataset_uri(AbsoluteIfLocal(*v));
  CARE_RETURN_IF_ERROR(
      int32_flag("calib-samples", [&](int32_t v) { calib->set_samples(v); }));
  CARE_RETURN_IF_ERROR(int32_flag(
      "calib-seq-len", [&](int32_t v) { calib->set_sequence_length(v); }));
  if (flags.Has("seed")) {
    auto v = flags.String("seed");
    uint64_t seed = 0;
    if (!absl::SimpleAtoi(*v, &seed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag --seed: expects a non-negative integer, got '", *v, "'"));
    }
    calib->set_seed(seed);
  }
  if (auto v = flags.String("calib-text-field")) calib->set_text_field(*v);
  if (flags.Bool("sequential")) calib->set_sequential(true);
  if (auto v = flags.String("eval")) eval->set_dataset_uri(AbsoluteIfLocal(*v));
  CARE_RETURN_IF_ERROR(int32_flag(
      "eval-seq-len", [&](int32_t v) { eval->set_window_length(v); }));
  CARE_RETURN_IF_ERROR(
      int32_flag("eval-windows", [&](int32_t v) { eval->set_max_windows(v); }));
  if (auto v = flags.String("eval-text-field")) eval->set_text_field(*v);
  if (flags.Bool("eval-bos")) eval->set_prepend_bos(true);
  if (flags.Has("damping")) {
    CARE_ASSIGN_OR_RETURN(double damping, flags.DoubleOr("damping", 0));
    spec.set_damping(damping);
  }
  // "auto" is the unset 0 of rope_dim and freqfold.
  for (const char* name : {"rope-dim", "freqfold"}) {
    if (flags.String(name) == "auto") continue;
    CARE_RETURN_IF_ERROR(int32_flag(name, [&](int32_t v) {
      std::string(name) == "rope-dim" ? spec.set_rope_dim(v)
                                      : spec.set_freqfold(v);
    }));
  }
  CARE_RETURN_IF_ERROR(
      int32_flag("kv-lora-rank", [&](int32_t v) { spec.set_kv_lora_rank(v); }));
  CARE_RETURN_IF_ERROR(int32_flag(
      "heal-steps", [&](int32_t v) { spec.mutable_healing()->set_steps(v); }));
  CARE_RETURN_IF_ERROR(
      int32_flag("priority", [&](int32_t v) { spec.set_priority(v); }));
  CARE_RETURN_IF_ERROR(
      int32_flag("max-attempts", [&](int32_t v) { spec.set_max_attempts(v); }));
  if (auto v = flags.String("request-id")) spec.set_request_id(*v);
  for (const std::string& label : labels) {
    CARE_ASSIGN_OR_RETURN(auto kv, ParseLabel(label, "label"));
    (*spec.mutable_labels())[kv.first] = kv.second;
  }
  // Leave empty sub-messages unset so the JSON and the stored spec stay tidy.
  if (spec.calibration().ByteSizeLong() == 0) spec.clear_calibration();
  if (spec.evaluation().ByteSizeLong() == 0) spec.clear_evaluation();
  return spec;
}

}  // namespace care::client
