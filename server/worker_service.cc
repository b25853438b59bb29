#include "server/worker_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/api/report_limits.h"

namespace care::server {
namespace {

constexpr int kDefaultWaitMs = 20000;
constexpr int kMaxWaitMs = 60000;

absl::Status CheckIds(const std::string& worker_id, const std::string& job_id,
                      int attempt) {
  if (worker_id.empty() || worker_id.size() > 256) {
    return absl::InvalidArgumentError("worker_id: required, at most 256 bytes");
  }
  if (job_id.empty() || job_id.size() > 64) {
    return absl::InvalidArgumentError("job_id: required, at most 64 bytes");
  }
  if (attempt < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attempt: must be >= 1, got ", attempt));
  }
  return absl::OkStatus();
}

// The report files sent with a successful CompleteJob, within the size
// limit (api/report_limits.h); nullopt when none were sent.
absl::StatusOr<std::optional<JobReportFiles>> ReportFiles(
    const v1::CompleteJobRequest& req) {
  for (const auto& [name, bytes] : {std::pair<const char*, const std::string*>{
                                        "report_json", &req.report_json()},
                                    {"report_html", &req.report_html()}}) {
    if (bytes->size() > care::api::kMaxReportFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", bytes->size(), " bytes, over the limit of ",
                       care::api::kMaxReportFileBytes));
    }
  }
  if (req.cancelled() ||
      (req.report_json().empty() && req.report_html().empty())) {
    return std::nullopt;
  }
  return JobReportFiles{req.report_json(), req.report_html(), req.attempt()};
}

}  // namespace

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t us = absl::ToUnixMicros(t);
  ts.set_seconds(us / 1000000);
  ts.set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
  return ts;
}

grpc::Status WorkerServiceImpl::LeaseJob(grpc::ServerContext* ctx,
                                         const v1::LeaseJobRequest* req,
                                         v1::LeaseJobResponse* resp) {
  return RunRpc(deps_, "LeaseJob", Role::kWorker, ctx,
                [&]() { return Lease(ctx, *req, resp); });
}

absl::Status WorkerServiceImpl::Lease(grpc::ServerContext* ctx,
                                      const v1::LeaseJobRequest& req,
                                      v1::LeaseJobResponse* resp) {
  if (req.worker_id().empty() || req.worker_id().size() > 256) {
    return absl::InvalidArgumentError("worker_id: required, at most 256 bytes");
  }
  if (!v1::Device_IsValid(req.device()) || req.device() == v1::DEVICE_ANY) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device: must be DEVICE_CPU or DEVICE_CUDA (a worker's device), got ",
        req.device()));
  }
  if (req.device_ordinal() < 0 || req.device_ordinal() > 1023) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device_ordinal: must be in [0, 1023], got ", req.device_ordinal()));
  }
  if (req.device_name().size() > 256) {
    return absl::InvalidArgumentError("device_name: longer than 256 bytes");
  }
  const WorkerDevice device{req.device(), req.device_ordinal(),
                            req.device_name()};
  if (req.wait_ms() < 0 || req.wait_ms() > kMaxWaitMs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "wait_ms: must be in [0, ", kMaxWaitMs, "], got ", req.wait_ms()));
  }
  const int wait_ms = req.wait_ms() == 0 ? kDefaultWaitMs : req.wait_ms();
  absl::Time deadline =
      absl::Now() + std::min(absl::Milliseconds(wait_ms), deps_.max_lease_wait);
  // Answer "no job" shortly before the caller's own deadline would fire.
  if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
    deadline = std::min(
        deadline, absl::FromChrono(ctx->deadline()) - absl::Milliseconds(100));
  }
  while (true) {
    const uint64_t generation = deps_.notifier->generation();
    CARE_ASSIGN_OR_RETURN(std::optional<struct Lease> lease,
                          deps_.store->LeaseJob(req.worker_id(), device));
    if (lease.has_value()) {
      deps_.metrics->LeaseGranted(lease->job, req.device());
      Log(LogLevel::kInfo, "job leased",
          {{"job", lease->job.id()},
           {"attempt", absl::StrCat(lease->job.attempt())},
           {"worker", req.worker_id()},
           {"device", lease->job.attempts().empty()
                          ? std::string()
                          : lease->job.attempts().rbegin()->device_name()}});
      resp->set_attempt(lease->job.attempt());
      *resp->mutable_lease_deadline() = ToTimestamp(lease->deadline);
      *resp->mutable_job() = std::move(lease->job);
      return absl::OkStatus();
    }
    const absl::Time now = absl::Now();
    if (now >= deadline || ctx->IsCancelled() ||
        deps_.notifier->shutting_down()) {
      return absl::OkStatus();  // No job: an empty response.
    }
    deps_.notifier->WaitForChange(
        generation, std::min(deadline, now + deps_.poll_interval));
  }
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* ctx,
                                          const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  return RunRpc(deps_, "Heartbeat", Role::kWorker, ctx, [&]() -> absl::Status {
    CARE_RETURN_IF_ERROR(
        CheckIds(req->worker_id(), req->job_id(), req->attempt()));
    std::vector<v1::LayerReport> layers(req->layers().begin(),
                                        req->layers().end());
    CARE_ASSIGN_OR_RETURN(
        HeartbeatResult result,
        deps_.store->Heartbeat(req->worker_id(), req->job_id(), req->attempt(),
                               req->has_progress() ? &req->progress() : nullptr,
                               layers));
    *resp->mutable_lease_deadline() = ToTimestamp(result.deadline);
    resp->set_cancel_requested(result.cancel_requested);
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::CommitOutput(grpc::ServerContext* ctx,
                                             const v1::CommitOutputRequest* req,
                                             v1::CommitOutputResponse* resp) {
  return RunRpc(
      deps_, "CommitOutput", Role::kWorker, ctx, [&]() -> absl::Status {
        CARE_RETURN_IF_ERROR(
            CheckIds(req->worker_id(), req->job_id(), req->attempt()));
        // A heartbeat's fenced renewal: one transaction checks that this is
        // the current attempt held by this worker and extends its lease, so
        // the rename that follows has a whole lease period to happen in.
        CARE_ASSIGN_OR_RETURN(
            HeartbeatResult result,
            deps_.store->Heartbeat(req->worker_id(), req->job_id(),
                                   req->attempt(), nullptr, {}));
        resp->set_granted(!result.cancel_requested);
        resp->set_cancel_requested(result.cancel_requested);
        *resp->mutable_lease_deadline() = ToTimestamp(result.deadline);
        Log(LogLevel::kInfo,
            result.cancel_requested ? "output commit refused (cancelling)"
                                    : "output commit granted",
            {{"job", req->job_id()},
             {"attempt", absl::StrCat(req->attempt())},
             {"worker", req->worker_id()}});
        return absl::OkStatus();
      });
}

grpc::Status WorkerServiceImpl::CompleteJob(grpc::ServerContext* ctx,
                                            const v1::CompleteJobRequest* req,
                                            v1::CompleteJobResponse* resp) {
  return RunRpc(
      deps_, "CompleteJob", Role::kWorker, ctx, [&]() -> absl::Status {
        CARE_RETURN_IF_ERROR(
            CheckIds(req->worker_id(), req->job_id(), req->attempt()));
        CARE_ASSIGN_OR_RETURN(std::optional<JobReportFiles> files,
                              ReportFiles(*req));
        v1::Report report = req->report();
        // Output only: what this server stores, whatever the worker said.
        report.set_report_json_bytes(
            files ? static_cast<int64_t>(files->json.size()) : 0);
        report.set_report_html_bytes(
            files ? static_cast<int64_t>(files->html.size()) : 0);
        CARE_ASSIGN_OR_RETURN(
            v1::Job job,
            deps_.store->Complete(req->worker_id(), req->job_id(),
                                  req->attempt(), report, req->cancelled(),
                                  files ? &*files : nullptr));
        deps_.metrics->JobFinished(job);
        Log(LogLevel::kInfo, "job finished",
            {{"job", job.id()},
             {"state", v1::JobState_Name(job.state())},
             {"attempt", absl::StrCat(job.attempt())}});
        *resp->mutable_job() = std::move(job);
        return absl::OkStatus();
      });
}

grpc::Status WorkerServiceImpl::FailJob(grpc::ServerContext* ctx,
                                        const v1::FailJobRequest* req,
                                        v1::FailJobResponse* resp) {
  return RunRpc(deps_, "FailJob", Role::kWorker, ctx, [&]() -> absl::Status {
    CARE_RETURN_IF_ERROR(
        CheckIds(req->worker_id(), req->job_id(), req->attempt()));
    CARE_ASSIGN_OR_RETURN(
        FailResult result,
        deps_.store->Fail(req->worker_id(), req->job_id(), req->attempt(),
                          req->failure(), req->retryable()));
    if (result.requeued) {
      deps_.metrics->JobRetried("worker_failure");
    } else {
      deps_.metrics->JobFinished(result.job);
    }
    Log(LogLevel::kInfo, result.requeued ? "job requeued" : "job failed",
        {{"job", result.job.id()},
         {"attempt", absl::StrCat(req->attempt())},
         {"reason", v1::FailureReason_Name(req->failure().reason())}});
    *resp->mutable_job() = std::move(result.job);
    return absl::OkStatus();
  });
}

}  // namespace care::server
