// Many clients submitting while many fake workers lease, heartbeat and
// complete: no job is leased twice in one attempt, none is lost.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server_harness.h"

namespace care::testing {
namespace {

TEST(ServerConcurrencyTest, NoDoubleLeaseNoLostJob) {
  constexpr int kClients = 8;
  constexpr int kJobsPerClient = 20;
  constexpr int kWorkers = 8;
  constexpr int kJobs = kClients * kJobsPerClient;
  ServerEnv env;
  ASSERT_TRUE(env.Start({"--log-level=warn"}));

  std::mutex mu;
  std::set<std::string> submitted;
  std::set<std::pair<std::string, int>> leases;
  int double_leases = 0;
  std::atomic<int> completed{0};
  std::atomic<int> errors{0};

  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = env.Client();
      for (int i = 0; i < kJobsPerClient; ++i) {
        v1::SubmitJobRequest req;
        *req.mutable_spec() = env.Spec(absl::StrCat("c", c, "-", i));
        req.mutable_spec()->set_priority(i % 3);
        v1::Job job;
        if (!client->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job)
                 .ok()) {
          ++errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        submitted.insert(job.id());
      }
    });
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(40);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      auto worker = env.Worker();
      const std::string name = absl::StrCat("worker-", w);
      while (completed.load() < kJobs &&
             std::chrono::steady_clock::now() < deadline) {
        v1::LeaseJobRequest req;
        req.set_worker_id(name);
        req.set_device(w % 2 ? v1::DEVICE_CPU : v1::DEVICE_CUDA);
        req.set_wait_ms(200);
        v1::LeaseJobResponse lease;
        if (!worker->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), req, &lease)
                 .ok()) {
          ++errors;
          continue;
        }
        if (!lease.has_job()) continue;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!leases.insert({lease.job().id(), lease.attempt()}).second) {
            ++double_leases;
          }
        }
        v1::HeartbeatRequest hb;
        hb.set_worker_id(name);
        hb.set_job_id(lease.job().id());
        hb.set_attempt(lease.attempt());
        hb.mutable_progress()->set_stage(v1::STAGE_LOADING);
        v1::HeartbeatResponse hb_resp;
        v1::CompleteJobRequest done;
        done.set_worker_id(name);
        done.set_job_id(lease.job().id());
        done.set_attempt(lease.attempt());
        v1::CompleteJobResponse done_resp;
        if (!worker->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), hb, &hb_resp)
                 .ok() ||
            !worker
                 ->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done,
                               &done_resp)
                 .ok()) {
          ++errors;
          continue;
        }
        ++completed;
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(double_leases, 0);
  EXPECT_EQ(submitted.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(completed.load(), kJobs);
  EXPECT_EQ(leases.size(), static_cast<size_t>(kJobs));
  // The database agrees: every job SUCCEEDED on its first attempt.
  auto client = env.Client();
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  list.add_states(v1::JOB_STATE_SUCCEEDED);
  v1::ListJobsResponse resp;
  ASSERT_TRUE(
      client->ListJobs(ServerEnv::Ctx(kClientToken).get(), list, &resp).ok());
  EXPECT_EQ(resp.jobs_size(), kJobs);
  std::set<std::string> done_ids;
  for (const v1::Job& job : resp.jobs()) {
    EXPECT_EQ(job.attempt(), 1);
    done_ids.insert(job.id());
  }
  EXPECT_EQ(done_ids, submitted);
}

}  // namespace
}  // namespace care::testing
