#include "server/metrics.h"

#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"

namespace care::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

std::string Lower(absl::string_view enum_name, absl::string_view prefix) {
  if (enum_name.substr(0, prefix.size()) == prefix) {
    enum_name.remove_prefix(prefix.size());
  }
  return absl::AsciiStrToLower(enum_name);
}

std::string Outcome(v1::JobState state) {
  return Lower(v1::JobState_Name(state), "JOB_STATE_");
}

double Seconds(const google::protobuf::Timestamp& a,
               const google::protobuf::Timestamp& b) {
  return static_cast<double>(b.seconds() - a.seconds()) +
         (b.nanos() - a.nanos()) * 1e-9;
}

}  // namespace

const prometheus::Histogram::BucketBoundaries& JobSecondsBuckets() {
  // 1 s ... 1 day: conversions run from seconds (tiny models) to hours.
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      1,    5,    15,   30,   60,    120,   300,   600,
      1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& RpcSecondsBuckets() {
  // 0.5 ms ... 60 s: unary calls are milliseconds, long polls up to 60 s.
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& PerplexityRatioBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      1.0, 1.01, 1.02, 1.05, 1.1, 1.2, 1.5, 2, 3, 5, 10};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& KvSavedRatioBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& HealErrorRatioBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  return *b;
}

// Gauges whose truth is the database: refreshed on every scrape.
class Metrics::StateGauges : public prometheus::Collectable {
 public:
  explicit StateGauges(CountsFn counts)
      : counts_(std::move(counts)),
        registry_(std::make_shared<prometheus::Registry>()),
        queued_(BuildGauge()
                    .Name("care_jobs_queued")
                    .Help("Jobs waiting for a worker (queue depth)")
                    .Register(*registry_)
                    .Add({})),
        running_(BuildGauge()
                     .Name("care_jobs_running")
                     .Help("Jobs leased to a worker (RUNNING or CANCELLING)")
                     .Register(*registry_)
                     .Add({})),
        workers_(BuildGauge()
                     .Name("care_workers_connected")
                     .Help("Workers that leased or heartbeat within the "
                           "--worker-seen-seconds window")
                     .Register(*registry_)
                     .Add({})),
        queued_by_device_(BuildGauge()
                              .Name("care_jobs_queued_by_device")
                              .Help("Jobs in QUEUED by the device they "
                                    "require (any, cpu, cuda)")
                              .Register(*registry_)),
        running_by_device_(BuildGauge()
                               .Name("care_jobs_running_by_device")
                               .Help("Leased jobs by the device of the "
                                     "worker running them")
                               .Register(*registry_)),
        workers_by_device_(BuildGauge()
                               .Name("care_workers_connected_by_device")
                               .Help("Connected workers (as "
                                     "care_workers_connected) by device")
                               .Register(*registry_)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::StatusOr<StateCounts> counts = counts_();
    // On a read error the previous values stay: a scrape never fails.
    if (counts.ok()) {
      queued_.Set(static_cast<double>(counts->queued));
      running_.Set(static_cast<double>(counts->running));
      workers_.Set(static_cast<double>(counts->workers_seen));
      SetAll(queued_by_device_, counts->queued_by_device);
      SetAll(running_by_device_, counts->running_by_device);
      SetAll(workers_by_device_, counts->workers_by_device);
    }
    return registry_->Collect();
  }

 private:
  CountsFn counts_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& queued_;
  prometheus::Gauge& running_;
  prometheus::Gauge& workers_;
  prometheus::Family<prometheus::Gauge>& queued_by_device_;
  prometheus::Family<prometheus::Gauge>& running_by_device_;
  prometheus::Family<prometheus::Gauge>& workers_by_device_;

  static void SetAll(prometheus::Family<prometheus::Gauge>& family,
                     const std::map<std::string, int64_t>& values) {
    for (const auto& [device, n] : values) {
      family.Add({{"device", device}}).Set(static_cast<double>(n));
    }
  }
};

Metrics::Metrics(CountsFn counts)
    : registry_(std::make_shared<prometheus::Registry>()),
      gauges_(std::make_shared<StateGauges>(std::move(counts))),
      submitted_(BuildCounter()
                     .Name("care_jobs_submitted_total")
                     .Help("Jobs accepted by SubmitJob (idempotent replays "
                           "not counted)")
                     .Register(*registry_)),
      finished_(BuildCounter()
                    .Name("care_jobs_finished_total")
                    .Help("Jobs that reached a terminal state, by outcome")
                    .Register(*registry_)),
      finished_by_layout_(
          BuildCounter()
              .Name("care_jobs_finished_by_layout_total")
              .Help("Jobs that reached a terminal state, by output layout "
                    "(latent, deepseek_v3) and outcome")
              .Register(*registry_)),
      failed_(BuildCounter()
                  .Name("care_jobs_failed_total")
                  .Help("FAILED jobs by failure reason")
                  .Register(*registry_)),
      leases_(BuildCounter()
                  .Name("care_leases_granted_total")
                  .Help("Leases handed to workers (one per attempt)")
                  .Register(*registry_)),
      leases_by_device_(BuildCounter()
                            .Name("care_leases_granted_by_device_total")
                            .Help("Leases handed to workers, by the "
                                  "worker's device (cpu, cuda)")
                            .Register(*registry_)),
      lease_expiries_(BuildCounter()
                          .Name("care_lease_expiries_total")
                          .Help("Leases that ran past their deadline")
                          .Register(*registry_)),
      retries_(BuildCounter()
                   .Name("care_job_retries_total")
                   .Help("Jobs put back in the queue for another attempt")
                   .Register(*registry_)),
      rpcs_(BuildCounter()
                .Name("care_rpc_requests_total")
                .Help("Finished RPCs by method and status code")
                .Register(*registry_)),
      rejected_(BuildCounter()
                    .Name("care_rpc_rejected_total")
                    .Help("RPCs refused by a capacity limit or unparsable, "
                          "by method and reason")
                    .Register(*registry_)),
      job_duration_(BuildHistogram()
                        .Name("care_job_duration_seconds")
                        .Help("First lease to terminal state, by outcome")
                        .Register(*registry_)),
      queue_wait_(BuildHistogram()
                      .Name("care_job_queue_wait_seconds")
                      .Help("Submission to first lease")
                      .Register(*registry_)),
      stage_duration_(BuildHistogram()
                          .Name("care_stage_duration_seconds")
                          .Help("Stage times reported by succeeded jobs")
                          .Register(*registry_)),
      rpc_duration_(BuildHistogram()
                        .Name("care_rpc_duration_seconds")
                        .Help("RPC handling time by method and status code")
                        .Register(*registry_)),
      perplexity_ratio_(
          BuildHistogram()
              .Name("care_job_perplexity_ratio")
              .Help("Converted / original perplexity of succeeded jobs")
              .Register(*registry_)),
      kv_saved_(BuildHistogram()
                    .Name("care_job_kv_width_saved_ratio")
                    .Help("1 - kv_width_after / kv_width_before of "
                          "succeeded jobs")
                    .Register(*registry_)),
      heal_error_ratio_(
          BuildHistogram()
              .Name("care_job_heal_error_ratio")
              .Help("Per healed layer: attention-output error kept / "
                    "one-shot export's, on the healing held-out windows")
              .Register(*registry_)) {}

std::shared_ptr<prometheus::Collectable> Metrics::gauges() const {
  return gauges_;
}

void Metrics::JobSubmitted() { submitted_.Add({}).Increment(); }

void Metrics::JobFinished(const v1::Job& job) {
  const std::string outcome = Outcome(job.state());
  finished_.Add({{"outcome", outcome}}).Increment();
  finished_by_layout_
      .Add({{"layout",
             job.spec().output_layout() == v1::OUTPUT_LAYOUT_DEEPSEEK_V3
                 ? "deepseek_v3"
                 : "latent"},
            {"outcome", outcome}})
      .Increment();
  if (job.state() == v1::JOB_STATE_FAILED) {
    failed_
        .Add({{"reason", Lower(v1::FailureReason_Name(job.failure().reason()),
                               "FAILURE_REASON_")}})
        .Increment();
  }
  if (job.has_start_time() && job.has_end_time()) {
    job_duration_.Add({{"outcome", outcome}}, JobSecondsBuckets())
        .Observe(Seconds(job.start_time(), job.end_time()));
  }
  if (job.state() != v1::JOB_STATE_SUCCEEDED || !job.has_report()) return;
  const v1::Report& report = job.report();
  for (const v1::StageTiming& t : report.timings()) {
    if (t.stage() == v1::STAGE_UNSPECIFIED || !(t.seconds() >= 0)) continue;
    stage_duration_
        .Add({{"stage", Lower(v1::Stage_Name(t.stage()), "STAGE_")}},
             JobSecondsBuckets())
        .Observe(t.seconds());
  }
  if (report.original().ppl() > 0 && report.converted().ppl() > 0) {
    perplexity_ratio_.Add({}, PerplexityRatioBuckets())
        .Observe(report.converted().ppl() / report.original().ppl());
  }
  if (report.kv_width_before() > 0 && report.kv_width_after() >= 0) {
    kv_saved_.Add({}, KvSavedRatioBuckets())
        .Observe(1.0 - static_cast<double>(report.kv_width_after()) /
                           static_cast<double>(report.kv_width_before()));
  }
  if (report.has_healing()) {
    for (const v1::LayerReport& l : report.layers()) {
      if (l.has_heal_error_before() && l.has_heal_error_after() &&
          l.heal_error_before() > 0 && l.heal_error_after() >= 0) {
        heal_error_ratio_.Add({}, HealErrorRatioBuckets())
            .Observe(l.heal_error_after() / l.heal_error_before());
      }
    }
  }
}

void Metrics::LeaseGranted(const v1::Job& job, v1::Device device) {
  leases_.Add({}).Increment();
  leases_by_device_.Add({{"device", DeviceLabel(device)}}).Increment();
  if (job.attempt() == 1 && job.has_start_time()) {
    queue_wait_.Add({}, JobSecondsBuckets())
        .Observe(Seconds(job.create_time(), job.start_time()));
  }
}

void Metrics::LeasesExpired(int count) {
  if (count > 0) lease_expiries_.Add({}).Increment(count);
}

void Metrics::JobRetried(absl::string_view cause, int count) {
  if (count > 0) {
    retries_.Add({{"cause", std::string(cause)}}).Increment(count);
  }
}

void Metrics::Rpc(absl::string_view method, absl::StatusCode code,
                  double seconds) {
  const prometheus::Labels labels = {{"method", std::string(method)},
                                     {"code", absl::StatusCodeToString(code)}};
  rpcs_.Add(labels).Increment();
  rpc_duration_.Add(labels, RpcSecondsBuckets()).Observe(seconds);
}

void Metrics::RpcRejected(absl::string_view method, absl::string_view reason) {
  rejected_
      .Add({{"method", std::string(method)}, {"reason", std::string(reason)}})
      .Increment();
}

}  // namespace care::server
