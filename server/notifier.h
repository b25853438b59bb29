// Wakes long-polling RPCs (LeaseJob, WatchJob) when the store commits a
// change, without those RPCs ever holding a store lock while they wait: a
// waiter re-reads the database after each wake-up, so a slow reader can
// never stall the writer.
#ifndef CARE_SERVER_NOTIFIER_H_
#define CARE_SERVER_NOTIFIER_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "absl/time/time.h"

namespace care::server {

class ChangeNotifier {
 public:
  uint64_t generation() const {
    std::lock_guard<std::mutex> lock(mu_);
    return generation_;
  }

  void Notify() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
    }
    cv_.notify_all();
  }

  // Returns when the generation moved past `seen`, at `deadline`, or on
  // Shutdown(); the caller re-checks its own condition either way.
  void WaitForChange(uint64_t seen, absl::Time deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, absl::ToChronoTime(deadline),
                   [&] { return generation_ != seen || shutting_down_; });
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutting_down_ = true;
    }
    cv_.notify_all();
  }

  bool shutting_down() const {
    std::lock_guard<std::mutex> lock(mu_);
    return shutting_down_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  bool shutting_down_ = false;
};

}  // namespace care::server

#endif  // CARE_SERVER_NOTIFIER_H_
