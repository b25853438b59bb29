// The worker's Prometheus metrics (docs/worker.md), on its own HTTP port.
// Thread-safe; a WorkerMetrics without a listen address only records.
#ifndef CARE_WORKER_SERVICE_METRICS_H_
#define CARE_WORKER_SERVICE_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"

namespace care::worker {

class WorkerMetrics {
 public:
  // `listen` "HOST:PORT" (port 0 = ephemeral) serves /metrics; "" serves
  // nothing. A bind failure is Unavailable naming the address.
  static absl::StatusOr<std::unique_ptr<WorkerMetrics>> Create(
      const std::string& listen);

  // "HOST:PORT" actually bound; "" when not serving.
  const std::string& address() const { return address_; }

  // One unit of per-layer work finished in `stage`.
  void LayerProcessed(care::v1::Stage stage);
  void AddStageSeconds(care::v1::Stage stage, double seconds);
  // Useful FLOPs (care/convert/flop_model.h) done in `stage`.
  void AddStageFlops(care::v1::Stage stage, double flops);
  // The latest achieved rate of `stage`: its FLOPs over its wall time.
  void SetAchievedGflops(care::v1::Stage stage, double gflops);
  // Outcome: succeeded, failed, cancelled, released, lease_lost.
  void JobFinished(absl::string_view outcome);
  void SetBusy(bool busy);
  // care_worker_task_accuracy{task, model="original"|"converted"} (acc) and
  // care_worker_task_accuracy_norm (acc_norm) from a finished job's report.
  void SetTaskAccuracy(const care::v1::Report& report);
  // Refreshes care_worker_peak_rss_bytes from getrusage.
  void UpdatePeakRss();

 private:
  WorkerMetrics();
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
  prometheus::Family<prometheus::Counter>& layers_;
  prometheus::Family<prometheus::Counter>& stage_seconds_;
  prometheus::Family<prometheus::Counter>& stage_flops_;
  prometheus::Family<prometheus::Gauge>& achieved_gflops_;
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Family<prometheus::Gauge>& task_accuracy_;
  prometheus::Family<prometheus::Gauge>& task_accuracy_norm_;
  prometheus::Gauge& busy_;
  prometheus::Gauge& peak_rss_;
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_METRICS_H_
