// Durability: jobs acknowledged before a kill -9 are all there after a
// restart on the same file, with their events, and clients retrying with
// the same request ids create no duplicates.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server_harness.h"

namespace care::testing {
namespace {

TEST(ServerDurabilityTest, AcknowledgedJobsSurviveKill9WithoutDuplicates) {
  ServerEnv env;
  ASSERT_TRUE(env.Start());
  auto client = env.Client();
  auto worker = env.Worker();

  // A first batch, fully acknowledged, one of them leased (two events).
  std::map<std::string, std::string> acked;  // request_id -> job id.
  for (int i = 0; i < 20; ++i) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = env.Spec(absl::StrCat("pre", i));
    req.mutable_spec()->set_request_id(absl::StrCat("pre-", i));
    v1::Job job;
    ASSERT_TRUE(
        client->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job).ok());
    acked[req.spec().request_id()] = job.id();
  }
  v1::LeaseJobRequest lease;
  lease.set_worker_id("w");
  lease.set_device(v1::DEVICE_CPU);
  lease.set_wait_ms(1000);
  v1::LeaseJobResponse leased;
  ASSERT_TRUE(
      worker->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), lease, &leased)
          .ok());
  ASSERT_TRUE(leased.has_job());

  // Then submits racing the kill: whatever was acknowledged must survive.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> attempted;
  std::thread submitter([&] {
    auto c = env.Client();
    for (int i = 0; !stop.load() && i < 5000; ++i) {
      v1::SubmitJobRequest req;
      *req.mutable_spec() = env.Spec(absl::StrCat("race", i));
      req.mutable_spec()->set_request_id(absl::StrCat("race-", i));
      {
        std::lock_guard<std::mutex> lock(mu);
        attempted.push_back(req.spec().request_id());
      }
      v1::Job job;
      auto ctx = ServerEnv::Ctx(kClientToken);
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(2));
      if (!c->SubmitJob(ctx.get(), req, &job).ok()) break;
      std::lock_guard<std::mutex> lock(mu);
      acked[req.spec().request_id()] = job.id();
    }
  });
  // Kill once some racing submits were acknowledged (bounded wait).
  for (int i = 0; i < 1000; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (acked.size() >= 30) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  env.Stop(SIGKILL);
  stop = true;
  submitter.join();
  ASSERT_GE(acked.size(), 30u) << "too few submits acknowledged in the race";

  ASSERT_TRUE(env.Start());
  client = env.Client();
  for (const auto& [request_id, id] : acked) {
    v1::GetJobRequest get;
    get.set_job_id(id);
    v1::Job job;
    grpc::Status s =
        client->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job);
    ASSERT_TRUE(s.ok()) << request_id << ": " << s.error_message();
    EXPECT_EQ(job.spec().request_id(), request_id);
  }
  v1::ListJobEventsRequest ev;
  ev.set_job_id(leased.job().id());
  v1::ListJobEventsResponse events;
  ASSERT_TRUE(
      client->ListJobEvents(ServerEnv::Ctx(kClientToken).get(), ev, &events)
          .ok());
  ASSERT_EQ(events.events_size(), 2);
  EXPECT_EQ(events.events(1).state(), v1::JOB_STATE_RUNNING);

  // Every client retries every request it ever sent: acknowledged ones map
  // to their original job, the rest are created once.
  std::vector<std::string> all_ids;
  for (int i = 0; i < 20; ++i) all_ids.push_back(absl::StrCat("pre-", i));
  all_ids.insert(all_ids.end(), attempted.begin(), attempted.end());
  std::set<std::string> job_ids;
  for (const std::string& request_id : all_ids) {
    const bool race = request_id.rfind("race-", 0) == 0;
    v1::SubmitJobRequest req;
    *req.mutable_spec() =
        env.Spec((race ? "race" : "pre") + request_id.substr(race ? 5 : 4));
    req.mutable_spec()->set_request_id(request_id);
    v1::Job job;
    grpc::Status s =
        client->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job);
    ASSERT_TRUE(s.ok()) << request_id << ": " << s.error_message();
    if (acked.count(request_id)) {
      EXPECT_EQ(job.id(), acked[request_id]);
    }
    job_ids.insert(job.id());
  }
  EXPECT_EQ(job_ids.size(), all_ids.size());
  size_t listed = 0;
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  while (true) {
    v1::ListJobsResponse resp;
    ASSERT_TRUE(
        client->ListJobs(ServerEnv::Ctx(kClientToken).get(), list, &resp).ok());
    listed += resp.jobs_size();
    if (resp.next_page_token().empty()) break;
    list.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(listed, all_ids.size());
}

}  // namespace
}  // namespace care::testing
