// The JSON lines of the pipeline process (docs/worker.md "Two processes"),
// decoded: progress, the commit request of the fenced output commit, and
// the outcome (report or error). Lines that are not one of these are
// ignored (the pipeline's stray prints go to stderr, but be lenient).
#ifndef CARE_WORKER_SERVICE_PIPELINE_PROTOCOL_H_
#define CARE_WORKER_SERVICE_PIPELINE_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/v1/job.pb.h"

namespace care::worker {

struct PipelineMessage {
  enum Kind { kIgnored, kProgress, kCommit, kOutcome };
  Kind kind = kIgnored;
  // kProgress.
  care::v1::Progress progress;
  bool has_flops = false;
  double flops = 0, seconds = 0;
  int64_t resumed_layers = 0;
  // kCommit: the output directory about to be renamed into place.
  std::string output;
  // kOutcome: the report, or the pipeline's error.
  std::optional<absl::StatusOr<care::v1::Report>> outcome;
};

PipelineMessage DecodePipelineLine(const std::string& line,
                                   const care::v1::JobSpec& spec);

// The service's answer to a commit request, one line on the child's stdin.
std::string CommitAnswer(bool granted, const std::string& reason);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_PIPELINE_PROTOCOL_H_
