// The worker's side of the job protocol: lease (long poll, backoff with
// jitter while the server is away), run with heartbeats, then complete,
// cancel, release or fail, and lease the next job. Stop() (SIGTERM) stops
// leasing and makes the running job stop at its next layer boundary and be
// released for another worker.
#ifndef CARE_WORKER_SERVICE_WORKER_H_
#define CARE_WORKER_SERVICE_WORKER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "care/v1/worker_service.grpc.pb.h"
#include "service/job_runner.h"
#include "service/metrics.h"
#include "service/options.h"
#include "service/server_channel.h"

namespace care::worker {

class Worker {
 public:
  // `metrics` may be null. `runner` and `metrics` must outlive the worker.
  Worker(const ServiceOptions& options, std::shared_ptr<grpc::Channel> channel,
         JobRunner& runner, WorkerMetrics* metrics);

  // Serves until Stop() or options.max_jobs jobs. Returns OK on a clean
  // stop; an error when the server refuses the worker's token (retrying
  // cannot help).
  absl::Status Serve();

  // Async-signal-unsafe; call from a normal thread (serve_command.cc waits
  // for signals with sigwait).
  void Stop();

  int jobs_run() const { return jobs_run_.load(); }

 private:
  // Runs one leased job through to the server's acknowledgement.
  void RunJob(const care::v1::LeaseJobResponse& lease);
  // CompleteJob / FailJob with retries while the server is unreachable.
  void Finish(const std::string& job_id, int attempt,
              const absl::StatusOr<care::v1::Report>& result,
              const CancelToken& cancel, const care::v1::Progress& where);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline) const;
  // Sleeps up to `duration`, returning early on Stop().
  void SleepUnlessStopped(absl::Duration duration);

  const ServiceOptions options_;
  ServerChannel server_;  // After options_, which it refers to.
  JobRunner& runner_;
  WorkerMetrics* metrics_;
  std::atomic<int> jobs_run_{0};

  std::mutex mu_;  // Guards the three below.
  std::condition_variable stopped_;
  bool stopping_ = false;
  grpc::ClientContext* lease_call_ = nullptr;  // To cancel the long poll.
  CancelToken* current_ = nullptr;             // The running job's token.
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_WORKER_H_
