// Maps a runner's error to the job protocol's failure: who must act (the
// user's input, the infrastructure, or us) and whether another attempt can
// help.
#ifndef CARE_WORKER_SERVICE_FAILURE_H_
#define CARE_WORKER_SERVICE_FAILURE_H_

#include "absl/status/status.h"
#include "care/v1/job.pb.h"

namespace care::worker {

struct ClassifiedFailure {
  care::v1::Failure failure;
  bool retryable = false;
};

// By status code: InvalidArgument, NotFound, FailedPrecondition, OutOfRange,
// Unimplemented, DataLoss, AlreadyExists, PermissionDenied -> user input
// (final); Unavailable, ResourceExhausted, DeadlineExceeded, Aborted ->
// infrastructure (retryable); anything else -> internal (final). The message
// is "<where>: <status message>", `where` being the stage and layer reached.
ClassifiedFailure ClassifyFailure(const absl::Status& status,
                                  const care::v1::Progress& where);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_FAILURE_H_
