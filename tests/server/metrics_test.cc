// Scrapes /metrics over HTTP after a scripted sequence of jobs and checks
// the exact series: counters, scrape-time gauges and histogram buckets.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "server_harness.h"

namespace care::testing {
namespace {

// The sample lines of `text` (no comments) that start with `prefix`, sorted
// (the exposition order of a family's children is unspecified).
std::vector<std::string> Series(const std::string& text,
                                const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(ServerMetricsTest, ExactSeriesAfterAScriptedSequence) {
  ServerEnv env;
  ASSERT_TRUE(env.Start({"--lease-seconds=1", "--reaper-interval-ms=100"}));
  auto client = env.Client();
  auto worker = env.Worker();
  auto submit = [&](const std::string& name, int max_attempts,
                    const std::string& request_id) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = env.Spec(name);
    req.mutable_spec()->set_max_attempts(max_attempts);
    req.mutable_spec()->set_request_id(request_id);
    v1::Job job;
    grpc::Status s =
        client->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  };
  auto lease = [&]() {
    v1::LeaseJobRequest req;
    req.set_worker_id("w1");
    req.set_device(v1::DEVICE_CPU);
    req.set_wait_ms(2000);
    v1::LeaseJobResponse resp;
    EXPECT_TRUE(
        worker->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), req, &resp).ok());
    return resp;
  };

  // a: succeeds; b: its lease expires on its only attempt; c: cancelled
  // while queued; plus one idempotent replay and one invalid submit.
  const v1::Job a = submit("a", 3, "a");
  submit("a", 3, "a");
  const v1::Job b = submit("b", 1, "b");
  const v1::Job c = submit("c", 3, "c");
  v1::SubmitJobRequest bad;
  v1::Job ignored;
  EXPECT_EQ(client->SubmitJob(ServerEnv::Ctx(kClientToken).get(), bad, &ignored)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(c.id());
  ASSERT_TRUE(
      client->CancelJob(ServerEnv::Ctx(kClientToken).get(), cancel, &ignored)
          .ok());

  ASSERT_EQ(lease().job().id(), a.id());
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(a.id());
  done.set_attempt(1);
  v1::Report* report = done.mutable_report();
  report->mutable_original()->set_ppl(8.0);
  report->mutable_converted()->set_ppl(9.0);  // Ratio 1.125, exact.
  report->set_kv_width_before(1000);
  report->set_kv_width_after(375);  // Saved 0.625, exact.
  // Healed layers: error ratios 0.25 and 1 (not accepted), both exact.
  report->mutable_healing()->set_train_tokens(512);
  auto* l0 = report->add_layers();
  l0->set_heal_error_before(0.5);
  l0->set_heal_error_after(0.125);
  auto* l1 = report->add_layers();
  l1->set_heal_error_before(0.25);
  l1->set_heal_error_after(0.25);
  auto* t1 = report->add_timings();
  t1->set_stage(v1::STAGE_LOADING);
  t1->set_seconds(2.5);
  auto* t2 = report->add_timings();
  t2->set_stage(v1::STAGE_DECOMPOSING);
  t2->set_seconds(700);
  auto* t3 = report->add_timings();
  t3->set_stage(v1::STAGE_HEALING);
  t3->set_seconds(40);
  v1::CompleteJobResponse done_resp;
  ASSERT_TRUE(
      worker->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done, &done_resp)
          .ok());

  ASSERT_EQ(lease().job().id(), b.id());
  // b's worker goes silent; the reaper fails it (1 attempt allowed).
  for (int i = 0; i < 50; ++i) {
    v1::GetJobRequest get;
    get.set_job_id(b.id());
    v1::Job job;
    ASSERT_TRUE(
        client->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job).ok());
    if (job.state() == v1::JOB_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  const std::string text = HttpGet(env.metrics_address(), "/metrics");
  ASSERT_FALSE(text.empty());
  using V = std::vector<std::string>;
  EXPECT_EQ(Series(text, "care_jobs_submitted_total"),
            V{"care_jobs_submitted_total 3"});
  EXPECT_EQ(Series(text, "care_jobs_finished_total"),
            Sorted({"care_jobs_finished_total{outcome=\"cancelled\"} 1",
                    "care_jobs_finished_total{outcome=\"succeeded\"} 1",
                    "care_jobs_finished_total{outcome=\"failed\"} 1"}));
  EXPECT_EQ(Series(text, "care_jobs_finished_by_layout_total"),
            Sorted({"care_jobs_finished_by_layout_total{layout=\"latent\","
                    "outcome=\"cancelled\"} 1",
                    "care_jobs_finished_by_layout_total{layout=\"latent\","
                    "outcome=\"succeeded\"} 1",
                    "care_jobs_finished_by_layout_total{layout=\"latent\","
                    "outcome=\"failed\"} 1"}));
  EXPECT_EQ(Series(text, "care_jobs_failed_total"),
            V{"care_jobs_failed_total{reason=\"infrastructure\"} 1"});
  EXPECT_EQ(Series(text, "care_leases_granted_total"),
            V{"care_leases_granted_total 2"});
  EXPECT_EQ(Series(text, "care_lease_expiries_total"),
            V{"care_lease_expiries_total 1"});
  EXPECT_TRUE(Series(text, "care_job_retries_total").empty());
  EXPECT_EQ(Series(text, "care_jobs_queued "), V{"care_jobs_queued 0"});
  EXPECT_EQ(Series(text, "care_jobs_running "), V{"care_jobs_running 0"});
  EXPECT_EQ(Series(text, "care_workers_connected "),
            V{"care_workers_connected 1"});
  // The same by device: every label present, idle ones at 0.
  EXPECT_EQ(Series(text, "care_jobs_queued_by_device{"),
            Sorted({"care_jobs_queued_by_device{device=\"any\"} 0",
                    "care_jobs_queued_by_device{device=\"cpu\"} 0",
                    "care_jobs_queued_by_device{device=\"cuda\"} 0"}));
  EXPECT_EQ(Series(text, "care_jobs_running_by_device{"),
            Sorted({"care_jobs_running_by_device{device=\"cpu\"} 0",
                    "care_jobs_running_by_device{device=\"cuda\"} 0"}));
  EXPECT_EQ(Series(text, "care_workers_connected_by_device{"),
            Sorted({"care_workers_connected_by_device{device=\"cpu\"} 1",
                    "care_workers_connected_by_device{device=\"cuda\"} 0"}));
  EXPECT_EQ(Series(text, "care_leases_granted_by_device_total{"),
            V{"care_leases_granted_by_device_total{device=\"cpu\"} 2"});
  EXPECT_EQ(Series(text, "care_job_perplexity_ratio"),
            Sorted({"care_job_perplexity_ratio_count 1",
                    "care_job_perplexity_ratio_sum 1.125",
                    "care_job_perplexity_ratio_bucket{le=\"1\"} 0",
                    "care_job_perplexity_ratio_bucket{le=\"1.01\"} 0",
                    "care_job_perplexity_ratio_bucket{le=\"1.02\"} 0",
                    "care_job_perplexity_ratio_bucket{le=\"1.05\"} 0",
                    "care_job_perplexity_ratio_bucket{le=\"1.1\"} 0",
                    "care_job_perplexity_ratio_bucket{le=\"1.2\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"1.5\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"2\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"3\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"5\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"10\"} 1",
                    "care_job_perplexity_ratio_bucket{le=\"+Inf\"} 1"}));
  const V heal = Series(text, "care_job_heal_error_ratio");
  EXPECT_EQ(heal.size(), 14u);  // count, sum, 11 bounds + Inf.
  for (const char* line : {"care_job_heal_error_ratio_count 2",
                           "care_job_heal_error_ratio_sum 1.25",
                           "care_job_heal_error_ratio_bucket{le=\"0.2\"} 0",
                           "care_job_heal_error_ratio_bucket{le=\"0.3\"} 1",
                           "care_job_heal_error_ratio_bucket{le=\"0.9\"} 1",
                           "care_job_heal_error_ratio_bucket{le=\"1\"} 2"}) {
    EXPECT_NE(std::find(heal.begin(), heal.end(), line), heal.end()) << line;
  }
  const V kv = Series(text, "care_job_kv_width_saved_ratio");
  EXPECT_EQ(kv.size(), 13u);  // count, sum, 10 bounds + Inf.
  EXPECT_NE(std::find(kv.begin(), kv.end(),
                      "care_job_kv_width_saved_ratio_sum 0.625"),
            kv.end());
  EXPECT_NE(std::find(kv.begin(), kv.end(),
                      "care_job_kv_width_saved_ratio_bucket{le=\"0.6\"} 0"),
            kv.end());
  EXPECT_NE(std::find(kv.begin(), kv.end(),
                      "care_job_kv_width_saved_ratio_bucket{le=\"0.7\"} 1"),
            kv.end());
  const V stages = Series(text, "care_stage_duration_seconds");
  for (const char* line : {
           "care_stage_duration_seconds_sum{stage=\"loading\"} 2.5",
           "care_stage_duration_seconds_bucket{stage=\"loading\",le=\"1\"} 0",
           "care_stage_duration_seconds_bucket{stage=\"loading\",le=\"5\"} 1",
           "care_stage_duration_seconds_bucket{stage=\"decomposing\",le="
           "\"600\"} 0",
           "care_stage_duration_seconds_bucket{stage=\"decomposing\",le="
           "\"1200\"} 1",
           "care_stage_duration_seconds_bucket{stage=\"decomposing\",le="
           "\"86400\"} 1",
           "care_stage_duration_seconds_sum{stage=\"healing\"} 40",
       }) {
    EXPECT_NE(std::find(stages.begin(), stages.end(), line), stages.end())
        << line;
  }
  EXPECT_EQ(stages.size(), 3u * 19u);  // Three stages: count, sum, 16 + Inf.
  const V durations = Series(text, "care_job_duration_seconds_count");
  EXPECT_EQ(durations,
            Sorted({"care_job_duration_seconds_count{outcome=\"succeeded\"} 1",
                    "care_job_duration_seconds_count{outcome=\"failed\"} 1"}));
  EXPECT_EQ(Series(text, "care_job_queue_wait_seconds_count"),
            V{"care_job_queue_wait_seconds_count 2"});
  const V rpcs = Series(text, "care_rpc_requests_total{");
  for (const char* line : {
           "care_rpc_requests_total{code=\"OK\",method=\"SubmitJob\"} 4",
           "care_rpc_requests_total{code=\"INVALID_ARGUMENT\",method="
           "\"SubmitJob\"} 1",
           "care_rpc_requests_total{code=\"OK\",method=\"CancelJob\"} 1",
           "care_rpc_requests_total{code=\"OK\",method=\"LeaseJob\"} 2",
           "care_rpc_requests_total{code=\"OK\",method=\"CompleteJob\"} 1",
       }) {
    EXPECT_NE(std::find(rpcs.begin(), rpcs.end(), line), rpcs.end()) << line;
  }
  EXPECT_FALSE(Series(text,
                      "care_rpc_duration_seconds_bucket{code=\"OK\",method="
                      "\"SubmitJob\",le=\"60\"} 4")
                   .empty());
}

}  // namespace
}  // namespace care::testing
