// Every Prometheus family care-server exports, declared in one place
// (docs/metrics.md lists them). Counters and histograms are updated by the
// services and the reaper as transitions commit; the state gauges are read
// from the database at scrape time, so they are never stale or drifting.
#ifndef CARE_SERVER_METRICS_H_
#define CARE_SERVER_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"
#include "server/store.h"

namespace care::server {

class Metrics {
 public:
  using CountsFn = std::function<absl::StatusOr<StateCounts>()>;
  explicit Metrics(CountsFn counts);

  // Both are registered with the exposer.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<prometheus::Collectable> gauges() const;

  void JobSubmitted();
  // A job reached a terminal state: outcome, failure reason, run time,
  // stage timings and quality (successful jobs with a report).
  void JobFinished(const v1::Job& job);
  // A lease was granted to a worker computing on `device`; the first
  // attempt records the queue wait.
  void LeaseGranted(const v1::Job& job, v1::Device device);
  void LeasesExpired(int count);
  // A job went back to QUEUED; cause is "lease_expired" or "worker_failure".
  void JobRetried(absl::string_view cause, int count = 1);
  void Rpc(absl::string_view method, absl::StatusCode code, double seconds);
  // An RPC refused to protect capacity or because it could not be parsed:
  // reason "watch_limit_token", "watch_limit_total", "threads_exhausted",
  // "unparsable_request".
  void RpcRejected(absl::string_view method, absl::string_view reason);

 private:
  class StateGauges;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StateGauges> gauges_;
  prometheus::Family<prometheus::Counter>& submitted_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Counter>& finished_by_layout_;
  prometheus::Family<prometheus::Counter>& failed_;
  prometheus::Family<prometheus::Counter>& leases_;
  prometheus::Family<prometheus::Counter>& leases_by_device_;
  prometheus::Family<prometheus::Counter>& lease_expiries_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Histogram>& job_duration_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& stage_duration_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Histogram>& perplexity_ratio_;
  prometheus::Family<prometheus::Histogram>& kv_saved_;
  prometheus::Family<prometheus::Histogram>& heal_error_ratio_;
};

// Bucket bounds (exported for the tests and docs/metrics.md).
const prometheus::Histogram::BucketBoundaries& JobSecondsBuckets();
const prometheus::Histogram::BucketBoundaries& RpcSecondsBuckets();
const prometheus::Histogram::BucketBoundaries& PerplexityRatioBuckets();
const prometheus::Histogram::BucketBoundaries& KvSavedRatioBuckets();
const prometheus::Histogram::BucketBoundaries& HealErrorRatioBuckets();

}  // namespace care::server

#endif  // CARE_SERVER_METRICS_H_
