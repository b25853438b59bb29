// Maps a runner's error to the job protocol's failure: who must act (the
// user's input, the infrastructure, or us) and whether another attempt can
// help.
#ifndef CARE_WORKER_SERVICE_FAILURE_H_
#define CARE_WORKER_SERVICE_FAILURE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
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
//
// `device` is the worker's device ("cuda:0 (NVIDIA H100 80GB HBM3)"; empty
// or "cpu" on a CPU worker). On a GPU worker, ResourceExhausted (device out
// of memory) and Unavailable (no device, device lost) are the device's
// failures, not the job's: infrastructure, retryable (the server offers the
// next attempt to another worker first), and the message starts with
// "device <device>: " and ends with what happens next.
ClassifiedFailure ClassifyFailure(const absl::Status& status,
                                  const care::v1::Progress& where,
                                  absl::string_view device = {});

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_FAILURE_H_
