// The durable job queue: every job, its events and the known workers in one
// SQLite file. One writer connection behind a mutex does every write in a
// BEGIN IMMEDIATE transaction; each state transition is an UPDATE conditional
// on the expected state and attempt that must change exactly one row, and the
// event describing it is appended in the same transaction. Reads use a small
// pool of separate connections (WAL: they never block the writer).
#ifndef CARE_SERVER_STORE_H_
#define CARE_SERVER_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "care/v1/conversion_service.pb.h"
#include "care/v1/job.pb.h"
#include "proto/api/names.h"
#include "server/clock.h"
#include "server/db.h"
#include "server/notifier.h"

namespace care::server {

struct StoreOptions {
  std::string path;
  int busy_timeout_ms = 5000;
  // How long a lease (and each Heartbeat's renewal) lasts.
  absl::Duration lease_duration = absl::Seconds(60);
  // Idle read connections kept open.
  int max_idle_readers = 8;
  // A worker counts as connected when it leased or heartbeat within this
  // window (Job.queue_reason and the per-device gauges).
  absl::Duration worker_window = absl::Seconds(60);
  // After a retryable failure or an expired lease, the job goes to another
  // worker if one asks within this time; past it, the same worker may retry
  // it (a one-worker cluster still makes progress).
  absl::Duration retry_elsewhere_grace = absl::Seconds(30);
};

// The device a worker advertises in LeaseJob.
struct WorkerDevice {
  v1::Device kind = v1::DEVICE_UNSPECIFIED;  // DEVICE_CPU or DEVICE_CUDA.
  int ordinal = 0;                           // cuda:N.
  std::string name;  // "" = DefaultDeviceName(kind, ordinal).
};

// "cpu", "cuda:N", or "unspecified".
std::string DefaultDeviceName(v1::Device kind, int ordinal);
// Lower-case label of a device: "any", "cpu", "cuda", "unspecified".
std::string DeviceLabel(v1::Device device);

struct SubmitResult {
  v1::Job job;
  bool created = false;  // False when request_id matched an existing job.
};

struct ListQuery {
  int page_size = 50;  // Already clamped by the caller.
  std::string page_token;
  std::vector<v1::JobState> states;
  std::map<std::string, std::string> labels;
};

struct ListResult {
  std::vector<v1::Job> jobs;
  std::string next_page_token;
};

struct EventPage {
  std::vector<v1::JobEvent> events;
  int64_t next_after_sequence = 0;  // 0: no more events now.
};

struct CancelResult {
  v1::Job job;
  bool finished = false;  // This call moved the job to CANCELLED.
};

struct Lease {
  v1::Job job;
  absl::Time deadline;
};

struct HeartbeatResult {
  absl::Time deadline;
  bool cancel_requested = false;
};

struct FailResult {
  v1::Job job;
  bool requeued = false;  // Retryable with attempts left: back to QUEUED.
};

struct ReapResult {
  int expired = 0;                // Leases found past their deadline.
  int requeued = 0;               // Of those, back to QUEUED.
  std::vector<v1::Job> finished;  // Of those, now terminal.
};

struct StateCounts {
  int64_t queued = 0;
  int64_t running = 0;  // RUNNING + CANCELLING.
  int64_t workers_seen = 0;
  // By DeviceLabel: queued jobs by the device they require, running jobs by
  // the device of the worker running them, workers seen by their device.
  std::map<std::string, int64_t> queued_by_device;
  std::map<std::string, int64_t> running_by_device;
  std::map<std::string, int64_t> workers_by_device;
};

// A succeeded job's full report as its worker wrote it (GetJobReport).
struct JobReportFiles {
  std::string json;  // care_report.json
  std::string html;  // care_report.html
  int attempt = 0;   // the attempt that wrote it
};

// True for SUCCEEDED, FAILED and CANCELLED (api/names.h).
using api::IsTerminal;

class Store {
 public:
  // Opens or creates the file and migrates it. `clock` and `notifier` (may be
  // null) must outlive the store.
  static absl::StatusOr<std::unique_ptr<Store>> Open(StoreOptions options,
                                                     const Clock* clock,
                                                     ChangeNotifier* notifier);
  ~Store();

  // `spec` must be validated and defaulted. Same request_id and equal spec:
  // the existing job; different spec: ALREADY_EXISTS.
  absl::StatusOr<SubmitResult> Submit(const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> GetJob(absl::string_view job_id);
  // Newest first; INVALID_ARGUMENT for a token from another query.
  absl::StatusOr<ListResult> ListJobs(const ListQuery& query);
  absl::StatusOr<EventPage> ListEvents(absl::string_view job_id,
                                       int64_t after_sequence, int limit);
  // QUEUED -> CANCELLED, RUNNING -> CANCELLING; CANCELLING and CANCELLED are
  // returned unchanged; SUCCEEDED/FAILED are FAILED_PRECONDITION.
  absl::StatusOr<CancelResult> Cancel(absl::string_view job_id);

  // Highest priority, then oldest QUEUED job this device may run: a CPU
  // worker takes DEVICE_CPU and DEVICE_ANY jobs, a CUDA worker DEVICE_CUDA
  // and DEVICE_ANY jobs, a worker naming no device only DEVICE_ANY jobs. A
  // job this worker just failed (or lost the lease of) is left to others for
  // `retry_elsewhere_grace`. nullopt when none. Records the worker and its
  // device as seen, and the attempt's device in Job.attempts.
  absl::StatusOr<std::optional<Lease>> LeaseJob(absl::string_view worker_id,
                                                const WorkerDevice& device);
  absl::StatusOr<std::optional<Lease>> LeaseJob(absl::string_view worker_id,
                                                v1::Device device) {
    return LeaseJob(worker_id, WorkerDevice{device, 0, ""});
  }
  // Renews the lease of (job, attempt) held by worker; stores progress,
  // appends STAGE_CHANGED / PROGRESS / LAYER_DONE events.
  // A null `progress` keeps the stored one. Writes from the current attempt
  // are accepted until the reaper has actually re-queued the job.
  absl::StatusOr<HeartbeatResult> Heartbeat(
      absl::string_view worker_id, absl::string_view job_id, int attempt,
      const v1::Progress* progress, const std::vector<v1::LayerReport>& layers);
  // RUNNING/CANCELLING -> SUCCEEDED with the report, or CANCELLING ->
  // CANCELLED when `cancelled`.
  // `files` (may be null), when succeeding, is stored in the same
  // transaction for GetJobReport.
  absl::StatusOr<v1::Job> Complete(absl::string_view worker_id,
                                   absl::string_view job_id, int attempt,
                                   const v1::Report& report, bool cancelled,
                                   const JobReportFiles* files = nullptr);
  // The stored report of a SUCCEEDED job: NOT_FOUND for an unknown job or
  // none stored, FAILED_PRECONDITION for a job that has not succeeded.
  absl::StatusOr<JobReportFiles> GetJobReport(absl::string_view job_id,
                                              bool json_only);
  // -> QUEUED when retryable, RUNNING and attempts remain; else -> FAILED.
  absl::StatusOr<FailResult> Fail(absl::string_view worker_id,
                                  absl::string_view job_id, int attempt,
                                  const v1::Failure& failure, bool retryable);
  // Leases past their deadline: CANCELLING -> CANCELLED; attempts left ->
  // QUEUED; else FAILED (FAILURE_REASON_INFRASTRUCTURE). One LEASE_EXPIRED
  // event each.
  absl::StatusOr<ReapResult> ReapExpiredLeases();

  // Workers by last_seen descending (at most 1000); `connected` marks those
  // seen within options.worker_window, and `connected_only` keeps only them.
  absl::StatusOr<std::vector<v1::Worker>> ListWorkers(bool connected_only);

  // For the gauges: queued, running and workers seen within `worker_window`.
  absl::StatusOr<StateCounts> CountStates(absl::Duration worker_window);
  absl::StatusOr<StateCounts> CountStates() {
    return CountStates(options_.worker_window);
  }

  absl::Duration lease_duration() const { return options_.lease_duration; }

 private:
  class ReaderLease;
  Store(StoreOptions options, const Clock* clock, ChangeNotifier* notifier,
        std::unique_ptr<Connection> writer);
  absl::StatusOr<std::unique_ptr<Connection>> AcquireReader();
  void ReleaseReader(std::unique_ptr<Connection> conn);
  void Notify();
  // Sets queue_reason on the QUEUED jobs among `jobs`.
  absl::Status AnnotateQueued(Connection& db,
                              const std::vector<v1::Job*>& jobs);

  StoreOptions options_;
  const Clock* clock_;
  ChangeNotifier* notifier_;
  std::mutex writer_mu_;  // The one writer connection.
  std::unique_ptr<Connection> writer_;
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;
};

}  // namespace care::server

#endif  // CARE_SERVER_STORE_H_
