#include "server/conversion_service.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/api/spec_validation.h"

namespace care::server {
namespace {

constexpr int kDefaultListPageSize = 50;
constexpr int kDefaultEventPageSize = 100;
constexpr int kMaxPageSize = 1000;

absl::Status RequireJobId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("job_id: required");
  if (id.size() > 64) {
    return absl::InvalidArgumentError("job_id: longer than 64 bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PageSize(int requested, int fallback) {
  if (requested < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: must be in [1, ", kMaxPageSize, "], got ", requested));
  }
  if (requested == 0) return fallback;
  return std::min(requested, kMaxPageSize);
}

}  // namespace

grpc::Status ConversionServiceImpl::SubmitJob(grpc::ServerContext* ctx,
                                              const v1::SubmitJobRequest* req,
                                              v1::Job* resp) {
  return RunRpc(deps_, "SubmitJob", Role::kClient, ctx, [&]() -> absl::Status {
    v1::JobSpec spec = req->spec();
    CARE_RETURN_IF_ERROR(care::api::ValidateJobSpec(spec));
    CARE_RETURN_IF_ERROR(deps_.roots->CheckSpec(spec));
    care::api::ApplyJobSpecDefaults(spec);
    CARE_ASSIGN_OR_RETURN(SubmitResult result, deps_.store->Submit(spec));
    if (result.created) {
      deps_.metrics->JobSubmitted();
      Log(LogLevel::kInfo, "job submitted",
          {{"job", result.job.id()},
           {"priority", absl::StrCat(spec.priority())},
           {"device", v1::Device_Name(spec.device())}});
    }
    *resp = std::move(result.job);
    return absl::OkStatus();
  });
}

grpc::Status ConversionServiceImpl::GetJob(grpc::ServerContext* ctx,
                                           const v1::GetJobRequest* req,
                                           v1::Job* resp) {
  return RunRpc(deps_, "GetJob", Role::kClient, ctx, [&]() -> absl::Status {
    CARE_RETURN_IF_ERROR(RequireJobId(req->job_id()));
    CARE_ASSIGN_OR_RETURN(*resp, deps_.store->GetJob(req->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status ConversionServiceImpl::ListJobs(grpc::ServerContext* ctx,
                                             const v1::ListJobsRequest* req,
                                             v1::ListJobsResponse* resp) {
  return RunRpc(deps_, "ListJobs", Role::kClient, ctx, [&]() -> absl::Status {
    ListQuery query;
    CARE_ASSIGN_OR_RETURN(query.page_size,
                          PageSize(req->page_size(), kDefaultListPageSize));
    query.page_token = req->page_token();
    for (int s : req->states()) {
      if (!v1::JobState_IsValid(s) || s == v1::JOB_STATE_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            absl::StrCat("states: unknown job state ", s));
      }
      query.states.push_back(static_cast<v1::JobState>(s));
    }
    std::sort(query.states.begin(), query.states.end());
    query.states.erase(std::unique(query.states.begin(), query.states.end()),
                       query.states.end());
    query.labels = std::map<std::string, std::string>(req->labels().begin(),
                                                      req->labels().end());
    CARE_ASSIGN_OR_RETURN(ListResult result, deps_.store->ListJobs(query));
    for (v1::Job& job : result.jobs) *resp->add_jobs() = std::move(job);
    resp->set_next_page_token(result.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status ConversionServiceImpl::CancelJob(grpc::ServerContext* ctx,
                                              const v1::CancelJobRequest* req,
                                              v1::Job* resp) {
  return RunRpc(deps_, "CancelJob", Role::kClient, ctx, [&]() -> absl::Status {
    CARE_RETURN_IF_ERROR(RequireJobId(req->job_id()));
    CARE_ASSIGN_OR_RETURN(CancelResult result,
                          deps_.store->Cancel(req->job_id()));
    if (result.finished) deps_.metrics->JobFinished(result.job);
    Log(LogLevel::kInfo, "cancel requested",
        {{"job", result.job.id()},
         {"state", v1::JobState_Name(result.job.state())}});
    *resp = std::move(result.job);
    return absl::OkStatus();
  });
}

grpc::Status ConversionServiceImpl::WatchJob(
    grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
    grpc::ServerWriter<v1::JobEvent>* writer) {
  return RunRpc(deps_, "WatchJob", Role::kClient, ctx,
                [&]() { return Watch(ctx, *req, writer); });
}

// Reads from the database and writes outside any store lock: a slow reader
// only holds its own RPC thread (Write blocks under flow control), never the
// writer. Waits between reads for a commit notification.
absl::Status ConversionServiceImpl::Watch(
    grpc::ServerContext* ctx, const v1::WatchJobRequest& req,
    grpc::ServerWriter<v1::JobEvent>* writer) {
  CARE_RETURN_IF_ERROR(RequireJobId(req.job_id()));
  if (req.after_sequence() < 0) {
    return absl::InvalidArgumentError("after_sequence: must be >= 0");
  }
  // Each open watch holds a server thread: capped per token and in total,
  // so that worker RPCs keep theirs (watch_limiter.h).
  std::string reason;
  absl::StatusOr<std::unique_ptr<WatchLimiter::Slot>> slot =
      deps_.watches->Acquire(AuthorizationHeader(*ctx).value_or(""), &reason);
  if (!slot.ok()) {
    deps_.metrics->RpcRejected("WatchJob", reason);
    Log(LogLevel::kWarn, "watch refused",
        {{"reason", reason}, {"peer", ctx->peer()}});
    return slot.status();
  }
  int64_t after = req.after_sequence();
  while (true) {
    const uint64_t generation = deps_.notifier->generation();
    CARE_ASSIGN_OR_RETURN(
        EventPage page,
        deps_.store->ListEvents(req.job_id(), after, kDefaultEventPageSize));
    for (const v1::JobEvent& event : page.events) {
      if (!writer->Write(event)) {
        return absl::CancelledError("watcher went away");
      }
      after = event.sequence();
      if (IsTerminal(event.state())) return absl::OkStatus();
    }
    if (page.next_after_sequence != 0) continue;  // More already stored.
    if (page.events.empty()) {
      // Nothing new: the job may have ended before after_sequence.
      CARE_ASSIGN_OR_RETURN(v1::Job job, deps_.store->GetJob(req.job_id()));
      if (IsTerminal(job.state())) {
        CARE_ASSIGN_OR_RETURN(EventPage last,
                              deps_.store->ListEvents(req.job_id(), after, 1));
        if (last.events.empty()) return absl::OkStatus();
        continue;  // A terminal event landed between the two reads.
      }
    }
    if (ctx->IsCancelled()) return absl::CancelledError("watcher went away");
    if (deps_.notifier->shutting_down()) {
      return absl::UnavailableError(absl::StrCat(
          "server shutting down; resume with after_sequence=", after));
    }
    deps_.notifier->WaitForChange(generation,
                                  absl::Now() + deps_.poll_interval);
  }
}

grpc::Status ConversionServiceImpl::ListJobEvents(
    grpc::ServerContext* ctx, const v1::ListJobEventsRequest* req,
    v1::ListJobEventsResponse* resp) {
  return RunRpc(
      deps_, "ListJobEvents", Role::kClient, ctx, [&]() -> absl::Status {
        CARE_RETURN_IF_ERROR(RequireJobId(req->job_id()));
        if (req->after_sequence() < 0) {
          return absl::InvalidArgumentError("after_sequence: must be >= 0");
        }
        CARE_ASSIGN_OR_RETURN(
            int page_size, PageSize(req->page_size(), kDefaultEventPageSize));
        CARE_ASSIGN_OR_RETURN(
            EventPage page,
            deps_.store->ListEvents(req->job_id(), req->after_sequence(),
                                    page_size));
        for (v1::JobEvent& e : page.events) *resp->add_events() = std::move(e);
        resp->set_next_after_sequence(page.next_after_sequence);
        return absl::OkStatus();
      });
}

grpc::Status ConversionServiceImpl::ListWorkers(
    grpc::ServerContext* ctx, const v1::ListWorkersRequest* req,
    v1::ListWorkersResponse* resp) {
  return RunRpc(
      deps_, "ListWorkers", Role::kClient, ctx, [&]() -> absl::Status {
        CARE_ASSIGN_OR_RETURN(std::vector<v1::Worker> workers,
                              deps_.store->ListWorkers(req->connected_only()));
        for (v1::Worker& w : workers) {
          *resp->add_workers() = std::move(w);
        }
        return absl::OkStatus();
      });
}

grpc::Status ConversionServiceImpl::GetJobReport(
    grpc::ServerContext* ctx, const v1::GetJobReportRequest* req,
    v1::JobReport* resp) {
  return RunRpc(
      deps_, "GetJobReport", Role::kClient, ctx, [&]() -> absl::Status {
        CARE_RETURN_IF_ERROR(RequireJobId(req->job_id()));
        CARE_ASSIGN_OR_RETURN(
            JobReportFiles files,
            deps_.store->GetJobReport(req->job_id(), req->json_only()));
        resp->set_job_id(req->job_id());
        resp->set_attempt(files.attempt);
        resp->set_report_json(std::move(files.json));
        resp->set_report_html(std::move(files.html));
        return absl::OkStatus();
      });
}

}  // namespace care::server
