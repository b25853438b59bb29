// carectl's output: tables for people, protobuf JSON for pipelines, event
// lines and the live progress bar of `watch`. Pure functions of the messages
// (and of explicit times), so golden tests pin the output exactly.
#ifndef CARE_CLIENT_FORMAT_H_
#define CARE_CLIENT_FORMAT_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "care/v1/conversion_service.pb.h"
#include "care/v1/job.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "proto/api/names.h"

namespace care::client {

enum class OutputFormat { kTable, kJson };

// "table" or "json"; anything else is InvalidArgument naming --output.
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text);

// "QUEUED", "RUNNING", ...; "-" for unspecified.
std::string StateName(care::v1::JobState state);
// "loading", "calibrating", ...; "-" for unspecified.
std::string StageName(care::v1::Stage stage);
std::string MethodName(care::v1::Method method);
std::string AllocationName(care::v1::RankAllocation allocation);
std::string DtypeName(care::v1::OutputDtype dtype);
std::string DeviceName(care::v1::Device device);
std::string ReasonName(care::v1::FailureReason reason);
std::string EventTypeName(care::v1::EventType type);
// True for SUCCEEDED, FAILED and CANCELLED (api/names.h).
using care::api::IsTerminal;

// RFC 3339 in UTC with seconds ("2026-11-28T10:00:00Z"); "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& time);
// "45s", "3m05s", "1h02m", "2d03h".
std::string HumanDuration(absl::Duration duration);
// "calibrating layer 3/8 45.0%" (layer shown 1-based); "-" when no stage.
std::string FormatProgress(const care::v1::Progress& progress);

// `carectl get`: the job as aligned "key: value" lines, then the report.
std::string FormatJobTable(const care::v1::Job& job);
// `carectl list`: one row per job.
std::string FormatJobListTable(const care::v1::ListJobsResponse& response);
// `carectl events`: one row per event.
std::string FormatEventsTable(const care::v1::ListJobEventsResponse& events);
// `carectl watch` without a terminal: one line per event.
std::string FormatEventLine(const care::v1::JobEvent& event);
// The last line of `watch`: outcome, duration and headline numbers.
std::string FormatOutcomeLine(const care::v1::Job& job);

// Protobuf's canonical JSON mapping; `pretty` indents (for --output json),
// otherwise one line (for JSON-lines streams).
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// Remaining time from the progress seen since `since`: linear in the job
// fraction; nullopt until the fraction moved.
std::optional<absl::Duration> EstimateRemaining(double fraction_at_start,
                                                absl::Time start,
                                                double fraction_now,
                                                absl::Time now);
// "[#########...........]  45.0%  calibrating  layer 3/8  ETA 1m20s",
// `bar_width` cells between the brackets.
std::string FormatProgressBar(const care::v1::Progress& progress,
                              std::optional<absl::Duration> remaining,
                              int bar_width);

}  // namespace care::client

#endif  // CARE_CLIENT_FORMAT_H_
