// Capacity for workers, whatever clients do: every open WatchJob stream
// holds a gRPC server thread, so open watches are capped per bearer token
// and in total, below the server's thread limit. LeaseJob long polls,
// Heartbeat, CommitOutput, CompleteJob and FailJob are never counted here,
// and the total cap leaves them at least half of the threads.
#ifndef CARE_SERVER_WATCH_LIMITER_H_
#define CARE_SERVER_WATCH_LIMITER_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::server {

class WatchLimiter {
 public:
  // An open watch; releases its slot when destroyed.
  class Slot {
   public:
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    friend class WatchLimiter;
    Slot(WatchLimiter* limiter, std::string key)
        : limiter_(limiter), key_(std::move(key)) {}
    WatchLimiter* limiter_;
    std::string key_;
  };

  WatchLimiter(int per_token, int total)
      : per_token_(per_token), total_(total) {}

  // `key` identifies the caller (its authorization value; kept in memory
  // only, never logged). ResourceExhausted naming the limit when full;
  // `*reason` then says which ("watch_limit_token" or "watch_limit_total").
  absl::StatusOr<std::unique_ptr<Slot>> Acquire(absl::string_view key,
                                                std::string* reason);
  int open() const;

 private:
  void Release(const std::string& key);

  const int per_token_;
  const int total_;
  mutable std::mutex mu_;
  std::map<std::string, int, std::less<>> by_key_;
  int open_ = 0;
};

}  // namespace care::server

#endif  // CARE_SERVER_WATCH_LIMITER_H_
