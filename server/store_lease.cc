// The worker side of the store: leases, heartbeats, completion, failure and
// the reaper. Every write is fenced by (job, attempt, worker).
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/store.h"
#include "server/store_internal.h"

namespace care::server {

using internal::AppendEvent;
using internal::EventInit;
using internal::ExpectOneChange;
using internal::JobRow;
using internal::LoadJob;
using internal::StateName;
using internal::ToMicros;

namespace {

// Records the worker as seen. A heartbeat passes no device
// (DEVICE_UNSPECIFIED): the one from its last LeaseJob stays.
absl::Status TouchWorker(Connection& db, absl::string_view worker_id,
                         const WorkerDevice& device, int64_t now) {
  CARE_ASSIGN_OR_RETURN(
      Statement stmt,
      db.Prepare("INSERT INTO workers (worker_id, device, last_seen_us, "
                 "device_ordinal, device_name) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (worker_id) DO UPDATE SET "
                 "last_seen_us = excluded.last_seen_us, "
                 "device = CASE WHEN excluded.device = 0 THEN device "
                 "ELSE excluded.device END, "
                 "device_ordinal = CASE WHEN excluded.device = 0 THEN "
                 "device_ordinal ELSE excluded.device_ordinal END, "
                 "device_name = CASE WHEN excluded.device = 0 THEN "
                 "device_name ELSE excluded.device_name END"));
  stmt.Bind(1, worker_id)
      .Bind(2, int64_t{device.kind})
      .Bind(3, now)
      .Bind(4, int64_t{device.ordinal})
      .Bind(5, device.name);
  return stmt.Run();
}

absl::Status CheckFence(const JobRow& row, absl::string_view worker_id,
                        int attempt) {
  const v1::Job& job = row.job;
  if (job.state() != v1::JOB_STATE_RUNNING &&
      job.state() != v1::JOB_STATE_CANCELLING) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " is ", StateName(job.state()),
                     ", not leased (attempt ", attempt, " is stale)"));
  }
  if (attempt != job.attempt()) {
    return absl::FailedPreconditionError(
        absl::StrCat("attempt ", attempt, " of job ", job.id(),
                     " is stale; the job is on attempt ", job.attempt()));
  }
  if (worker_id != job.worker_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " attempt ", attempt,
                     " is leased to another worker"));
  }
  return absl::OkStatus();
}

absl::Status ValidateProgress(const v1::Progress& p) {
  if (!v1::Stage_IsValid(p.stage())) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress.stage: unknown value ", p.stage()));
  }
  if (!std::isfinite(p.fraction()) || p.fraction() < 0 || p.fraction() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "progress.fraction: must be in [0, 1], got ", p.fraction()));
  }
  if (p.layer() < 0 || p.layer_count() < 0) {
    return absl::InvalidArgumentError(
        "progress.layer, progress.layer_count: must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<Lease>> Store::LeaseJob(
    absl::string_view worker_id, const WorkerDevice& worker_device) {
  WorkerDevice device = worker_device;
  if (device.kind != v1::DEVICE_CPU && device.kind != v1::DEVICE_CUDA) {
    device.kind = v1::DEVICE_UNSPECIFIED;
  }
  if (device.name.empty()) {
    device.name = DefaultDeviceName(device.kind, device.ordinal);
  }
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const absl::Time now_time = clock_->Now();
  const int64_t now = ToMicros(now_time);
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  CARE_RETURN_IF_ERROR(TouchWorker(db, worker_id, device, now));
  // A CPU or CUDA worker takes its own device's jobs and DEVICE_ANY ones;
  // a worker that names no device takes only DEVICE_ANY jobs.
  const int64_t own = device.kind == v1::DEVICE_UNSPECIFIED
                          ? int64_t{v1::DEVICE_ANY}
                          : int64_t{device.kind};
  std::string id;
  int64_t attempt = 0;
  {  // Scoped: a statement still holding a row would block the COMMIT.
    CARE_ASSIGN_OR_RETURN(
        Statement pick,
        db.Prepare("SELECT id, attempt FROM jobs WHERE state = ? AND device "
                   "IN (?, ?) AND (avoid_worker IS NULL OR avoid_worker != ? "
                   "OR avoid_until_us <= ?) ORDER BY priority DESC, "
                   "create_us, rowid LIMIT 1"));
    pick.Bind(1, int64_t{v1::JOB_STATE_QUEUED})
        .Bind(2, int64_t{v1::DEVICE_ANY})
        .Bind(3, own)
        .Bind(4, worker_id)
        .Bind(5, now);
    CARE_ASSIGN_OR_RETURN(bool found, pick.Step());
    if (found) {
      id = pick.Text(0);
      attempt = pick.Int(1);
    }
  }
  if (id.empty()) {
    CARE_RETURN_IF_ERROR(tx.Commit());
    return std::optional<Lease>();
  }
  const absl::Time deadline = now_time + options_.lease_duration;
  // Appending a serialized Job that holds one Attempt to the stored ones is
  // a protobuf merge: the list grows by one.
  v1::Job record;
  v1::Attempt* a = record.add_attempts();
  a->set_attempt(static_cast<int32_t>(attempt + 1));
  a->set_worker_id(std::string(worker_id));
  a->set_device(device.kind);
  a->set_device_name(device.name);
  a->mutable_lease_time()->set_seconds(now / 1000000);
  a->mutable_lease_time()->set_nanos(static_cast<int32_t>(now % 1000000) *
                                     1000);
  CARE_ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE jobs SET state = ?, attempt = attempt + 1, "
                 "worker_id = ?, lease_deadline_us = ?, "
                 "start_us = COALESCE(start_us, ?), update_us = ?4, "
                 "progress = NULL, lease_device = ?, "
                 "attempts = COALESCE(attempts, X'') || ?, "
                 "avoid_worker = NULL, avoid_until_us = NULL "
                 "WHERE id = ? AND state = ? AND attempt = ?"));
  update.Bind(1, int64_t{v1::JOB_STATE_RUNNING})
      .Bind(2, worker_id)
      .Bind(3, ToMicros(deadline))
      .Bind(4, now)
      .Bind(5, int64_t{device.kind})
      .BindBlob(6, record.SerializeAsString())
      .Bind(7, id)
      .Bind(8, int64_t{v1::JOB_STATE_QUEUED})
      .Bind(9, attempt);
  CARE_RETURN_IF_ERROR(update.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "lease"));
  EventInit event;
  event.type = v1::EVENT_TYPE_STATE_CHANGED;
  event.state = v1::JOB_STATE_RUNNING;
  event.attempt = static_cast<int>(attempt + 1);
  event.message = absl::StrCat("leased by ", worker_id, " on ", device.name);
  CARE_RETURN_IF_ERROR(AppendEvent(db, id, event, now));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, id));
  CARE_RETURN_IF_ERROR(tx.Commit());
  Notify();
  return std::optional<Lease>(Lease{std::move(row.job), deadline});
}

absl::StatusOr<HeartbeatResult> Store::Heartbeat(
    absl::string_view worker_id, absl::string_view job_id, int attempt,
    const v1::Progress* progress, const std::vector<v1::LayerReport>& layers) {
  if (progress != nullptr) CARE_RETURN_IF_ERROR(ValidateProgress(*progress));
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const absl::Time now_time = clock_->Now();
  const int64_t now = ToMicros(now_time);
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(CheckFence(row, worker_id, attempt));
  const v1::Progress& old = row.job.progress();
  const v1::Progress& next = progress != nullptr ? *progress : old;
  const absl::Time deadline = now_time + options_.lease_duration;
  CARE_ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE jobs SET lease_deadline_us = ?, progress = ?, "
                 "update_us = ? WHERE id = ? AND state = ? AND attempt = ? "
                 "AND worker_id = ?"));
  update.Bind(1, ToMicros(deadline))
      .BindBlob(2, next.SerializeAsString())
      .Bind(3, now)
      .Bind(4, job_id)
      .Bind(5, int64_t{row.job.state()})
      .Bind(6, int64_t{attempt})
      .Bind(7, worker_id);
  CARE_RETURN_IF_ERROR(update.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "heartbeat"));

  EventInit event;
  event.state = row.job.state();
  event.attempt = attempt;
  event.progress = &next;
  bool appended = false;
  if (next.stage() != old.stage()) {
    event.type = v1::EVENT_TYPE_STAGE_CHANGED;
    event.message = absl::StrCat("stage ", v1::Stage_Name(next.stage()));
  } else if (next.layer() != old.layer() ||
             next.layer_count() != old.layer_count() ||
             next.fraction() != old.fraction()) {
    event.type = v1::EVENT_TYPE_PROGRESS;
  }
  if (event.type != v1::EVENT_TYPE_UNSPECIFIED) {
    CARE_RETURN_IF_ERROR(AppendEvent(db, job_id, event, now));
    appended = true;
  }
  for (const v1::LayerReport& layer : layers) {
    EventInit done;
    done.type = v1::EVENT_TYPE_LAYER_DONE;
    done.state = row.job.state();
    done.attempt = attempt;
    done.progress = &next;
    done.layer = &layer;
    done.message = absl::StrCat("layer ", layer.layer(), " done");
    CARE_RETURN_IF_ERROR(AppendEvent(db, job_id, done, now));
    appended = true;
  }
  CARE_RETURN_IF_ERROR(TouchWorker(db, worker_id, WorkerDevice{}, now));
  CARE_RETURN_IF_ERROR(tx.Commit());
  if (appended) Notify();
  return HeartbeatResult{deadline, row.job.state() == v1::JOB_STATE_CANCELLING};
}

absl::StatusOr<v1::Job> Store::Complete(absl::string_view worker_id,
                                        absl::string_view job_id, int attempt,
                                        const v1::Report& report,
                                        bool cancelled,
                                        const JobReportFiles* files) {
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const int64_t now = ToMicros(clock_->Now());
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(CheckFence(row, worker_id, attempt));
  if (cancelled && row.job.state() != v1::JOB_STATE_CANCELLING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is ", StateName(row.job.state()),
        "; cancelled=true is only valid after a cancel was requested"));
  }
  const v1::JobState next =
      cancelled ? v1::JOB_STATE_CANCELLED : v1::JOB_STATE_SUCCEEDED;
  CARE_ASSIGN_OR_RETURN(
      Statement update,
      db.Prepare("UPDATE jobs SET state = ?, report = ?, worker_id = NULL, "
                 "lease_deadline_us = NULL, end_us = ?, update_us = ?3 "
                 "WHERE id = ? AND state = ? AND attempt = ?"));
  update.Bind(1, int64_t{next});
  if (cancelled) {
    update.BindNull(2);
  } else {
    update.BindBlob(2, report.SerializeAsString());
  }
  update.Bind(3, now)
      .Bind(4, job_id)
      .Bind(5, int64_t{row.job.state()})
      .Bind(6, int64_t{attempt});
  CARE_RETURN_IF_ERROR(update.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "complete"));
  if (!cancelled && files != nullptr) {
    CARE_RETURN_IF_ERROR(internal::PutJobReport(db, job_id, *files, now));
  }
  EventInit event;
  event.type = v1::EVENT_TYPE_STATE_CHANGED;
  event.state = next;
  event.attempt = attempt;
  event.message = cancelled ? "worker stopped after cancel" : "succeeded";
  CARE_RETURN_IF_ERROR(AppendEvent(db, job_id, event, now));
  CARE_ASSIGN_OR_RETURN(JobRow after, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(tx.Commit());
  Notify();
  return std::move(after.job);
}

absl::StatusOr<FailResult> Store::Fail(absl::string_view worker_id,
                                       absl::string_view job_id, int attempt,
                                       const v1::Failure& failure,
                                       bool retryable) {
  if (!v1::FailureReason_IsValid(failure.reason())) {
    return absl::InvalidArgumentError(
        absl::StrCat("failure.reason: unknown value ", failure.reason()));
  }
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const int64_t now = ToMicros(clock_->Now());
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(CheckFence(row, worker_id, attempt));
  // A cancel request wins over a retry: the user asked the job to stop.
  const bool requeue = retryable && row.job.state() == v1::JOB_STATE_RUNNING &&
                       attempt < row.max_attempts;
  EventInit event;
  event.type = v1::EVENT_TYPE_STATE_CHANGED;
  event.attempt = attempt;
  v1::Failure stored = failure;
  if (stored.reason() == v1::FAILURE_REASON_UNSPECIFIED) {
    stored.set_reason(v1::FAILURE_REASON_INTERNAL);
  }
  const char* sql;
  if (requeue) {
    event.state = v1::JOB_STATE_QUEUED;
    event.message = absl::StrCat("attempt ", attempt, " of ", row.max_attempts,
                                 " failed, retrying: ", failure.message());
    // The next attempt goes to another worker first: the failure may be
    // this worker's (its device ran out of memory, its disk filled).
    sql =
        "UPDATE jobs SET state = ?, worker_id = NULL, lease_deadline_us = "
        "NULL, update_us = ?, avoid_worker = worker_id, avoid_until_us = ? "
        "WHERE id = ? AND state = ? AND attempt = ?";
  } else {
    event.state = v1::JOB_STATE_FAILED;
    if (retryable && attempt >= row.max_attempts) {
      stored.set_message(absl::StrCat(stored.message(), " (attempt ", attempt,
                                      " of ", row.max_attempts, ")"));
    }
    event.message = stored.message();
    sql =
        "UPDATE jobs SET state = ?, worker_id = NULL, lease_deadline_us = "
        "NULL, update_us = ?, end_us = ?2, failure = ? WHERE id = ? AND "
        "state = ? AND attempt = ?";
  }
  CARE_ASSIGN_OR_RETURN(Statement update, db.Prepare(sql));
  int i = 1;
  update.Bind(i++, int64_t{event.state});
  update.Bind(i++, now);
  if (requeue) {
    update.Bind(i++, ToMicros(clock_->Now() + options_.retry_elsewhere_grace));
  } else {
    update.BindBlob(i++, stored.SerializeAsString());
  }
  update.Bind(i++, job_id);
  update.Bind(i++, int64_t{row.job.state()});
  update.Bind(i++, int64_t{attempt});
  CARE_RETURN_IF_ERROR(update.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "fail"));
  CARE_RETURN_IF_ERROR(AppendEvent(db, job_id, event, now));
  CARE_ASSIGN_OR_RETURN(JobRow after, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(tx.Commit());
  Notify();
  return FailResult{std::move(after.job), requeue};
}

absl::StatusOr<ReapResult> Store::ReapExpiredLeases() {
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const int64_t now = ToMicros(clock_->Now());
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  std::vector<JobRow> expired;
  {
    CARE_ASSIGN_OR_RETURN(
        Statement find,
        db.Prepare(absl::StrCat("SELECT ", internal::kJobColumns,
                                " FROM jobs WHERE state IN (?, ?) AND "
                                "lease_deadline_us < ? LIMIT 256")));
    find.Bind(1, int64_t{v1::JOB_STATE_RUNNING})
        .Bind(2, int64_t{v1::JOB_STATE_CANCELLING})
        .Bind(3, now);
    while (true) {
      CARE_ASSIGN_OR_RETURN(bool row, find.Step());
      if (!row) break;
      CARE_ASSIGN_OR_RETURN(JobRow job, internal::ReadJobRow(find));
      expired.push_back(std::move(job));
    }
  }
  ReapResult result;
  for (const JobRow& row : expired) {
    const v1::Job& job = row.job;
    EventInit event;
    event.type = v1::EVENT_TYPE_LEASE_EXPIRED;
    event.attempt = job.attempt();
    v1::Failure failure;
    if (job.state() == v1::JOB_STATE_CANCELLING) {
      event.state = v1::JOB_STATE_CANCELLED;
    } else if (job.attempt() < row.max_attempts) {
      event.state = v1::JOB_STATE_QUEUED;
    } else {
      event.state = v1::JOB_STATE_FAILED;
      failure.set_reason(v1::FAILURE_REASON_INFRASTRUCTURE);
      failure.set_message(absl::StrCat(
          "lease of worker ", job.worker_id(), " expired on attempt ",
          job.attempt(), " of ", row.max_attempts, "; attempts exhausted"));
    }
    event.message = absl::StrCat("lease of worker ", job.worker_id(),
                                 " expired; now ", StateName(event.state));
    const bool terminal = IsTerminal(event.state);
    CARE_ASSIGN_OR_RETURN(
        Statement update,
        db.Prepare("UPDATE jobs SET state = ?, worker_id = NULL, "
                   "lease_deadline_us = NULL, update_us = ?, "
                   "end_us = CASE WHEN ? THEN ?2 ELSE NULL END, failure = ?, "
                   "avoid_worker = worker_id, avoid_until_us = ? "
                   "WHERE id = ? AND state = ? AND attempt = ?"));
    update.Bind(1, int64_t{event.state})
        .Bind(2, now)
        .Bind(3, int64_t{terminal});
    if (event.state == v1::JOB_STATE_FAILED) {
      update.BindBlob(4, failure.SerializeAsString());
    } else {
      update.BindNull(4);
    }
    update
        .Bind(5,
              now + absl::ToInt64Microseconds(options_.retry_elsewhere_grace))
        .Bind(6, job.id())
        .Bind(7, int64_t{job.state()})
        .Bind(8, int64_t{job.attempt()});
    CARE_RETURN_IF_ERROR(update.Run());
    CARE_RETURN_IF_ERROR(ExpectOneChange(db, "reap"));
    CARE_RETURN_IF_ERROR(AppendEvent(db, job.id(), event, now));
    ++result.expired;
    if (event.state == v1::JOB_STATE_QUEUED) ++result.requeued;
    if (terminal) {
      CARE_ASSIGN_OR_RETURN(JobRow after, LoadJob(db, job.id()));
      result.finished.push_back(std::move(after.job));
    }
  }
  CARE_RETURN_IF_ERROR(tx.Commit());
  if (result.expired > 0) Notify();
  return result;
}

}  // namespace care::server
