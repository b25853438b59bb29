// What the worker service runs for a leased job, behind a small interface:
// the CARE pipeline in production (subprocess_runner.h). The runner reports
// progress through a ProgressSink and checks a CancelToken at every layer
// boundary; the service turns both into heartbeats and the job's outcome.
#ifndef CARE_WORKER_SERVICE_JOB_RUNNER_H_
#define CARE_WORKER_SERVICE_JOB_RUNNER_H_

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/v1/job.pb.h"

namespace care::worker {

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  // At least at every stage change and layer boundary. Cheap: only records.
  virtual void Report(const care::v1::Progress& progress) = 0;
  // A layer's conversion result, sent with the next heartbeat.
  virtual void LayerDone(const care::v1::LayerReport& layer) = 0;
  // Useful FLOPs done so far in the running pipeline stage and that stage's
  // wall seconds (both cumulative within the stage), for the achieved-rate
  // metrics. Optional.
  virtual void StageCompute(care::v1::Stage /*stage*/, double /*flops*/,
                            double /*seconds*/) {}
  // The fenced output commit: the runner is about to rename the job's
  // output into place (and drop shared resume state). OK only when the
  // server has just confirmed that this attempt still holds the job; the
  // error says why not, and the runner then publishes nothing.
  virtual absl::Status ConfirmCommit(const std::string& output) = 0;
};

// Why the runner should stop. Several may be set; the service decides the
// outcome: a lost lease writes nothing, a cancel completes as cancelled, a
// shutdown releases the job for another worker.
class CancelToken {
 public:
  enum Reason : unsigned {
    kCancelRequested = 1,  // The user cancelled (heartbeat said so).
    kShutdown = 2,         // SIGTERM: release the job.
    kLeaseLost = 4,        // Another attempt owns the job now.
  };
  void Cancel(Reason reason) { reasons_.fetch_or(reason); }
  bool cancelled() const { return reasons_.load() != 0; }
  bool Has(Reason reason) const { return (reasons_.load() & reason) != 0; }

 private:
  std::atomic<unsigned> reasons_{0};
};

class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Runs `job` (its spec is the server's defaulted one). Returns the report
  // after writing the output atomically, Cancelled when it stopped at a layer
  // boundary because `cancel` was set (nothing written), or the error, whose
  // code classifies it (failure.h) and whose message names the file, tensor
  // or layer.
  virtual absl::StatusOr<care::v1::Report> Run(const care::v1::Job& job,
                                               ProgressSink& progress,
                                               const CancelToken& cancel) = 0;
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_JOB_RUNNER_H_
