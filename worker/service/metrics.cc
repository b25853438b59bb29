#include "service/metrics.h"

#include <sys/resource.h>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/api/names.h"

namespace care::worker {

namespace {

// Metric label of a stage ("unspecified" rather than an empty value).
std::string StageLabel(care::v1::Stage stage) {
  absl::string_view word = care::api::StageWord(stage);
  return word.empty() ? "unspecified" : std::string(word);
}

}  // namespace

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      layers_(prometheus::BuildCounter()
                  .Name("care_worker_layers_processed_total")
                  .Help("Model layers finished, by pipeline stage.")
                  .Register(*registry_)),
      stage_seconds_(prometheus::BuildCounter()
                         .Name("care_worker_stage_seconds_total")
                         .Help("Wall time spent in each pipeline stage.")
                         .Register(*registry_)),
      stage_flops_(prometheus::BuildCounter()
                       .Name("care_worker_stage_flops_total")
                       .Help("Useful floating-point operations done in each "
                             "pipeline stage (flop model, 2 per "
                             "multiply-add).")
                       .Register(*registry_)),
      achieved_gflops_(prometheus::BuildGauge()
                           .Name("care_worker_achieved_gflops")
                           .Help("Achieved GFLOP/s of the latest run of each "
                                 "pipeline stage: its useful FLOPs over its "
                                 "wall time.")
                           .Register(*registry_)),
      jobs_(prometheus::BuildCounter()
                .Name("care_worker_jobs_total")
                .Help("Leased jobs by outcome: succeeded, failed, "
                      "cancelled, released, lease_lost.")
                .Register(*registry_)),
      task_accuracy_(prometheus::BuildGauge()
                         .Name("care_worker_task_accuracy")
                         .Help("Zero-shot accuracy (acc) of the latest "
                               "finished job on each evaluation task, of the "
                               "original and of the converted model.")
                         .Register(*registry_)),
      task_accuracy_norm_(prometheus::BuildGauge()
                              .Name("care_worker_task_accuracy_norm")
                              .Help("The same for acc_norm (log-likelihood "
                                    "divided by the choice's length).")
                              .Register(*registry_)),
      busy_(prometheus::BuildGauge()
                .Name("care_worker_busy")
                .Help("1 while a job is running.")
                .Register(*registry_)
                .Add({})),
      peak_rss_(prometheus::BuildGauge()
                    .Name("care_worker_peak_rss_bytes")
                    .Help("Peak resident set size of the worker process.")
                    .Register(*registry_)
                    .Add({})) {
  // Pre-create the outcome series so rates start at 0, not at absence.
  for (const char* outcome :
       {"succeeded", "failed", "cancelled", "released", "lease_lost"}) {
    jobs_.Add({{"outcome", outcome}});
  }
}

absl::StatusOr<std::unique_ptr<WorkerMetrics>> WorkerMetrics::Create(
    const std::string& listen) {
  std::unique_ptr<WorkerMetrics> metrics(new WorkerMetrics());
  metrics->UpdatePeakRss();
  if (listen.empty()) return metrics;
  // prometheus-cpp reports bind failures by exception: stop them here.
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(listen);
    metrics->exposer_->RegisterCollectable(metrics->registry_);
    auto ports = metrics->exposer_->GetListeningPorts();
    std::string host = listen.substr(0, listen.rfind(':'));
    metrics->address_ =
        absl::StrCat(host, ":", ports.empty() ? 0 : ports.front());
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "--metrics-listen ", listen, ": cannot serve /metrics: ", e.what()));
  }
  return metrics;
}

void WorkerMetrics::LayerProcessed(care::v1::Stage stage) {
  layers_.Add({{"stage", StageLabel(stage)}}).Increment();
}

void WorkerMetrics::AddStageSeconds(care::v1::Stage stage, double seconds) {
  if (seconds > 0) {
    stage_seconds_.Add({{"stage", StageLabel(stage)}}).Increment(seconds);
  }
}

void WorkerMetrics::AddStageFlops(care::v1::Stage stage, double flops) {
  if (flops > 0) {
    stage_flops_.Add({{"stage", StageLabel(stage)}}).Increment(flops);
  }
}

void WorkerMetrics::SetAchievedGflops(care::v1::Stage stage, double gflops) {
  achieved_gflops_.Add({{"stage", StageLabel(stage)}}).Set(gflops);
}

void WorkerMetrics::JobFinished(absl::string_view outcome) {
  jobs_.Add({{"outcome", std::string(outcome)}}).Increment();
}

void WorkerMetrics::SetBusy(bool busy) { busy_.Set(busy ? 1 : 0); }

void WorkerMetrics::SetTaskAccuracy(const care::v1::Report& report) {
  for (const care::v1::TaskAccuracy& t : report.task_accuracy()) {
    for (const auto& [model, score] :
         {std::pair{"original", &t.original()},
          std::pair{"converted", &t.converted()}}) {
      task_accuracy_.Add({{"task", t.name()}, {"model", model}})
          .Set(score->acc());
      task_accuracy_norm_.Add({{"task", t.name()}, {"model", model}})
          .Set(score->acc_norm());
    }
  }
}

void WorkerMetrics::UpdatePeakRss() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    peak_rss_.Set(static_cast<double>(usage.ru_maxrss) * 1024.0);  // KiB.
  }
}

}  // namespace care::worker
