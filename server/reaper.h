// The background thread that returns expired leases to the queue (or fails
// their jobs after max_attempts) every `interval`, and records the metrics.
// It starts a grace period after the server starts (see the constructor).
#ifndef CARE_SERVER_REAPER_H_
#define CARE_SERVER_REAPER_H_

#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "server/metrics.h"
#include "server/store.h"

namespace care::server {

class Reaper {
 public:
  // `grace`: after Start(), leases are left alone this long (one lease
  // period): workers cut off while the server was down get the time to
  // reconnect and renew before anything is re-queued.
  Reaper(Store* store, Metrics* metrics, absl::Duration interval,
         absl::Duration grace = absl::ZeroDuration())
      : store_(store), metrics_(metrics), interval_(interval), grace_(grace) {}
  ~Reaper() { Stop(); }

  void Start();
  // Wakes the thread and joins it; idempotent.
  void Stop();
  // One pass, synchronously (also what the thread runs).
  void RunOnce();

 private:
  Store* store_;
  Metrics* metrics_;
  absl::Duration interval_;
  absl::Duration grace_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace care::server

#endif  // CARE_SERVER_REAPER_H_
