#include "server/watch_limiter.h"

#include "absl/strings/str_cat.h"

namespace care::server {

WatchLimiter::Slot::~Slot() { limiter_->Release(key_); }

absl::StatusOr<std::unique_ptr<WatchLimiter::Slot>> WatchLimiter::Acquire(
    absl::string_view key, std::string* reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (open_ >= total_) {
    *reason = "watch_limit_total";
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many open WatchJob streams on this server (", total_,
        ", --max-watches); close some or poll with GetJob/ListJobEvents"));
  }
  auto it = by_key_.find(key);
  if (it != by_key_.end() && it->second >= per_token_) {
    *reason = "watch_limit_token";
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many open WatchJob streams for this token (", per_token_,
        ", --max-watches-per-token); close some or poll with "
        "GetJob/ListJobEvents"));
  }
  if (it == by_key_.end()) it = by_key_.emplace(std::string(key), 0).first;
  ++it->second;
  ++open_;
  return std::unique_ptr<Slot>(new Slot(this, std::string(key)));
}

void WatchLimiter::Release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end() && --it->second <= 0) by_key_.erase(it);
  --open_;
}

int WatchLimiter::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

}  // namespace care::server
