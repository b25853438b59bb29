#include "service/worker.h"

#include <algorithm>
#include <iostream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "service/failure.h"
#include "service/heartbeat.h"
#include "service/leftovers.h"
#include "service/report_files.h"

namespace care::worker {

namespace {

// How long a final write (complete/fail) keeps retrying an unreachable
// server. Past it the lease expires and the server re-queues the job.
constexpr absl::Duration kFinishRetryWindow = absl::Minutes(2);

void Log(const std::string& line) {
  std::cerr << "care-worker: " << line << "\n";
}

// The lease's length, from the server's own timestamps (the deadline minus
// the lease time), so that no clock skew between the hosts enters it; the
// deadline minus this host's now when an older server sent no lease time.
absl::Duration LeaseLength(const care::v1::LeaseJobResponse& lease) {
  auto time = [](const google::protobuf::Timestamp& t) {
    return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  };
  const absl::Time deadline = time(lease.lease_deadline());
  const care::v1::Job& job = lease.job();
  if (!job.attempts().empty() &&
      job.attempts().rbegin()->attempt() == lease.attempt() &&
      job.attempts().rbegin()->has_lease_time()) {
    return deadline - time(job.attempts().rbegin()->lease_time());
  }
  return std::max(deadline - absl::Now(), absl::Seconds(1));
}

}  // namespace

Worker::Worker(const ServiceOptions& options,
               std::shared_ptr<grpc::Channel> channel, JobRunner& runner,
               WorkerMetrics* metrics)
    : options_(options),
      server_(options_, std::move(channel)),
      runner_(runner),
      metrics_(metrics) {}

std::unique_ptr<grpc::ClientContext> Worker::Context(
    absl::Duration deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization",
                       absl::StrCat("Bearer ", options_.token));
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return context;
}

void Worker::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = true;
  if (lease_call_ != nullptr) lease_call_->TryCancel();
  if (current_ != nullptr) current_->Cancel(CancelToken::kShutdown);
  stopped_.notify_all();
}

void Worker::SleepUnlessStopped(absl::Duration duration) {
  std::unique_lock<std::mutex> lock(mu_);
  stopped_.wait_for(lock, absl::ToChronoMilliseconds(duration),
                    [this] { return stopping_; });
}

absl::Status Worker::Serve() {
  std::mt19937_64 random(std::random_device{}());
  absl::Duration backoff = options_.backoff_initial;
  Log(absl::StrCat("worker ", options_.worker_id, " on ", options_.device_name,
                   " serving ", options_.server));
  // What crashed workers left in a shared --work-dir (leftovers.h).
  if (const int removed = RemoveAbandonedScratch(options_.work_dir);
      removed > 0) {
    Log(absl::StrCat("removed ", removed,
                     " abandoned scratch directories from ",
                     options_.work_dir));
  }
  while (true) {
    if (options_.max_jobs > 0 && jobs_run_.load() >= options_.max_jobs) break;
    care::v1::LeaseJobRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_device(options_.device);
    request.set_device_ordinal(options_.device_ordinal);
    request.set_device_name(options_.device_name);
    request.set_wait_ms(options_.lease_wait_ms);
    // The server bounds the wait; leave it room to answer.
    auto context =
        Context(absl::Milliseconds(options_.lease_wait_ms) + absl::Seconds(15));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
      lease_call_ = context.get();
    }
    care::v1::LeaseJobResponse response;
    grpc::Status status =
        server_.stub()->LeaseJob(context.get(), request, &response);
    bool stop_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease_call_ = nullptr;
      stop_now = stopping_;
    }
    if (stop_now) {
      // A job leased as the stop arrived goes straight back.
      if (status.ok() && response.has_job()) {
        CancelToken released;
        released.Cancel(CancelToken::kShutdown);
        Finish(response.job().id(), response.attempt(),
               absl::CancelledError("worker stopping"), released, {});
      }
      break;
    }
    if (!status.ok()) {
      if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
          status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        return absl::PermissionDeniedError(
            absl::StrCat("care-server at ", options_.server,
                         " refused the worker token from ", options_.token_file,
                         ": ", status.error_message()));
      }
      // Full jitter: workers restarted together do not retry in lockstep.
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      absl::Duration sleep = backoff * jitter(random);
      Log(absl::StrCat("cannot lease from ", options_.server, " (",
                       status.error_message(), "); retrying in ",
                       absl::FormatDuration(sleep)));
      // A channel in transient failure keeps failing calls fast with its
      // last error until its own reconnect backoff ends (seconds after the
      // server is back): start over with a fresh one instead.
      server_.ReconnectIfFailing();
      SleepUnlessStopped(sleep);
      backoff = std::min(backoff * 2, options_.backoff_max);
      continue;
    }
    backoff = options_.backoff_initial;
    if (!response.has_job()) continue;  // Long poll ended empty.
    RunJob(response);
    jobs_run_.fetch_add(1);
  }
  Log("stopped leasing");
  return absl::OkStatus();
}

void Worker::RunJob(const care::v1::LeaseJobResponse& lease) {
  const care::v1::Job& job = lease.job();
  Log(absl::StrCat("leased ", job.id(), " attempt ", lease.attempt()));
  CancelToken cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = &cancel;
    if (stopping_) cancel.Cancel(CancelToken::kShutdown);
  }
  if (metrics_ != nullptr) metrics_->SetBusy(true);

  // Renew well within the lease: at most a third of it.
  const absl::Duration lease_length = LeaseLength(lease);
  const absl::Duration interval = std::clamp(
      lease_length / 3, absl::Milliseconds(50), options_.heartbeat_interval);
  Heartbeat heartbeat(
      server_, {options_.worker_id, job.id(), lease.attempt(), options_.token},
      lease_length, interval,
      std::min(options_.min_heartbeat_spacing, interval), cancel, metrics_);
  heartbeat.Start();
  absl::StatusOr<care::v1::Report> result = runner_.Run(job, heartbeat, cancel);
  heartbeat.Finish(/*completed=*/result.ok());
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = nullptr;
  }
  Finish(job.id(), lease.attempt(), result, cancel, heartbeat.progress());
  if (metrics_ != nullptr) {
    metrics_->SetBusy(false);
    metrics_->UpdatePeakRss();
  }
}

void Worker::Finish(const std::string& job_id, int attempt,
                    const absl::StatusOr<care::v1::Report>& result,
                    const CancelToken& cancel,
                    const care::v1::Progress& where) {
  std::string outcome;
  care::v1::CompleteJobRequest complete;
  care::v1::FailJobRequest fail;
  complete.set_worker_id(options_.worker_id);
  complete.set_job_id(job_id);
  complete.set_attempt(attempt);
  fail.set_worker_id(options_.worker_id);
  fail.set_job_id(job_id);
  fail.set_attempt(attempt);

  if (cancel.Has(CancelToken::kLeaseLost)) {
    // Another attempt owns the job: any write would be rejected, and the
    // output (if any) was not ours to publish.
    Log(absl::StrCat(job_id, " attempt ", attempt,
                     ": lease lost, dropping the result"));
    if (metrics_ != nullptr) metrics_->JobFinished("lease_lost");
    return;
  }
  if (result.ok()) {
    *complete.mutable_report() = *result;
    for (const std::string& problem : AttachReportFiles(*result, &complete)) {
      Log(absl::StrCat(job_id, " attempt ", attempt,
                       ": report file not sent: ", problem));
    }
    outcome = "succeeded";
    if (metrics_ != nullptr) metrics_->SetTaskAccuracy(*result);
  } else if (cancel.Has(CancelToken::kCancelRequested)) {
    complete.set_cancelled(true);
    outcome = "cancelled";
  } else if (cancel.Has(CancelToken::kShutdown)) {
    fail.mutable_failure()->set_reason(care::v1::FAILURE_REASON_INFRASTRUCTURE);
    fail.mutable_failure()->set_message(absl::StrCat(
        "worker ", options_.worker_id, " shut down during attempt ", attempt,
        "; released for another worker"));
    fail.set_retryable(true);
    outcome = "released";
  } else {
    ClassifiedFailure classified =
        ClassifyFailure(result.status(), where, options_.device_name);
    *fail.mutable_failure() = classified.failure;
    fail.set_retryable(classified.retryable);
    outcome = "failed";
  }
  const bool completing = outcome == "succeeded" || outcome == "cancelled";

  absl::Time give_up = absl::Now() + kFinishRetryWindow;
  absl::Duration backoff = absl::Milliseconds(200);
  while (true) {
    auto context = Context(absl::Seconds(30));
    grpc::Status status;
    if (completing) {
      care::v1::CompleteJobResponse response;
      status = server_.stub()->CompleteJob(context.get(), complete, &response);
    } else {
      care::v1::FailJobResponse response;
      status = server_.stub()->FailJob(context.get(), fail, &response);
    }
    if (status.ok()) {
      Log(absl::StrCat(job_id, " attempt ", attempt, ": ", outcome,
                       completing ? "" : ": " + fail.failure().message()));
      break;
    }
    if (!TransientRpcError(status) || absl::Now() > give_up) {
      // FAILED_PRECONDITION: fenced off (the lease expired meanwhile).
      Log(absl::StrCat(job_id, " attempt ", attempt, ": server rejected the ",
                       outcome, " report: ", status.error_message()));
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        outcome = "lease_lost";
      }
      break;
    }
    server_.ReconnectIfFailing();
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
  if (metrics_ != nullptr) metrics_->JobFinished(outcome);
}

}  // namespace care::worker
