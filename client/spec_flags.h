// Building a care.v1.JobSpec from `carectl submit` flags and/or a spec file
// (JSON or YAML, spec_file.h; flags override the file's fields).
#ifndef CARE_CLIENT_SPEC_FLAGS_H_
#define CARE_CLIENT_SPEC_FLAGS_H_

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/flags.h"
#include "care/v1/job.pb.h"
#include "client/spec_file.h"

namespace care::client {

// Valued flags that set spec fields (--model, --out, --kv-save, ...).
const std::set<std::string>& SpecFlagNames();
// Boolean spec flags (--sequential, --eval-bos).
const std::set<std::string>& SpecBoolFlagNames();

// Removes every "--name V" / "--name=V" from `args` and returns the values
// in order: Flags keeps only the last value of a flag, --label repeats.
absl::StatusOr<std::vector<std::string>> ExtractRepeated(
    std::vector<std::string>& args, absl::string_view name);

// "k=v" -> {k, v}; errors name the flag.
absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(
    absl::string_view text, absl::string_view flag);

absl::StatusOr<care::v1::Method> ParseMethod(absl::string_view text);
absl::StatusOr<care::v1::RankAllocation> ParseAllocation(
    absl::string_view text);
absl::StatusOr<care::v1::OutputDtype> ParseDtype(absl::string_view text);
absl::StatusOr<care::v1::Device> ParseDevice(absl::string_view text);
// "latent", "deepseek-v3" (or deepseek_v3).
absl::StatusOr<care::v1::OutputLayout> ParseLayout(absl::string_view text);
// "queued", "RUNNING", "job_state_failed" ... (case-insensitive).
absl::StatusOr<care::v1::JobState> ParseState(absl::string_view text);

// Rewrites the short "-f FILE" to "--spec FILE" (before "--").
void ExpandShortFlags(std::vector<std::string>& args);

// The spec from --spec / -f (if given) overridden by the field flags and
// `labels` ("k=v"; merged into the file's labels, a flag wins per key).
// Relative local paths in --model/--out/--calib/--eval are made absolute
// against the current directory. Not validated.
absl::StatusOr<care::v1::JobSpec> SpecFromFlags(
    const Flags& flags, const std::vector<std::string>& labels);

}  // namespace care::client

#endif  // CARE_CLIENT_SPEC_FLAGS_H_
