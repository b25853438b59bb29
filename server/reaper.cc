#include "server/reaper.h"

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace care::server {

void Reaper::Start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    if (grace_ > absl::ZeroDuration()) {
      Log(LogLevel::kInfo, "reaper waits one lease period after start",
          {{"grace_seconds", absl::StrCat(absl::ToDoubleSeconds(grace_))}});
      if (cv_.wait_for(lock, absl::ToChronoNanoseconds(grace_),
                       [this] { return stop_; })) {
        return;
      }
    }
    while (!stop_) {
      lock.unlock();
      RunOnce();
      lock.lock();
      cv_.wait_for(lock, absl::ToChronoNanoseconds(interval_),
                   [this] { return stop_; });
    }
  });
}

void Reaper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reaper::RunOnce() {
  absl::StatusOr<ReapResult> result = store_->ReapExpiredLeases();
  if (!result.ok()) {
    Log(LogLevel::kError, "reaper pass failed",
        {{"error", std::string(result.status().message())}});
    return;
  }
  if (result->expired == 0) return;
  metrics_->LeasesExpired(result->expired);
  metrics_->JobRetried("lease_expired", result->requeued);
  for (const v1::Job& job : result->finished) metrics_->JobFinished(job);
  Log(LogLevel::kWarn, "leases expired",
      {{"expired", absl::StrCat(result->expired)},
       {"requeued", absl::StrCat(result->requeued)},
       {"finished", absl::StrCat(result->finished.size())}});
}

}  // namespace care::server
