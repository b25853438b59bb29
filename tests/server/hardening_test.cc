// Issue 23 against the real care-server binary (real SQLite file, gRPC on
// loopback, clients posing as workers): the fenced output commit, the
// reaper's grace after a restart, capacity kept for worker RPCs while
// clients hold watches, and unparsable requests answered and counted.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api_fixture.h"

namespace care::testing {
namespace {

using std::chrono::milliseconds;

class ServerHardeningTest : public ServerApiTest {
 protected:
  grpc::Status Commit(const std::string& worker, const std::string& job,
                      int attempt, v1::CommitOutputResponse* resp) {
    v1::CommitOutputRequest req;
    req.set_worker_id(worker);
    req.set_job_id(job);
    req.set_attempt(attempt);
    return worker_->CommitOutput(ServerEnv::Ctx(kWorkerToken).get(), req, resp);
  }
  grpc::Status Beat(const std::string& worker, const std::string& job,
                    int attempt) {
    v1::HeartbeatRequest req;
    req.set_worker_id(worker);
    req.set_job_id(job);
    req.set_attempt(attempt);
    v1::HeartbeatResponse resp;
    return worker_->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), req, &resp);
  }
};

TEST_F(ServerHardeningTest, CommitOutputIsGrantedOnlyToTheCurrentAttempt) {
  StartServer({"--lease-seconds=1", "--reaper-interval-ms=50"});
  const Job job = MustSubmit(env_.Spec("fenced"));
  v1::LeaseJobResponse first = Lease("w1", 5000);
  ASSERT_EQ(first.job().id(), job.id());

  v1::CommitOutputResponse resp;
  ASSERT_TRUE(Commit("w1", job.id(), 1, &resp).ok());
  EXPECT_TRUE(resp.granted());
  EXPECT_FALSE(resp.cancel_requested());
  EXPECT_GE(resp.lease_deadline().seconds(), first.lease_deadline().seconds());
  // Not the holder, or not the current attempt: fenced off.
  EXPECT_EQ(Commit("w2", job.id(), 1, &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Commit("w1", job.id(), 2, &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // The lease runs out (no heartbeats), attempt 2 goes to w2: attempt 1 can
  // never publish any more.
  v1::LeaseJobResponse second = Lease("w2", 8000);
  ASSERT_EQ(second.job().id(), job.id());
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_EQ(Commit("w1", job.id(), 1, &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // A cancel request refuses the commit without fencing the attempt off.
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  Job cancelled;
  ASSERT_TRUE(
      client_->CancelJob(ServerEnv::Ctx(kClientToken).get(), cancel, &cancelled)
          .ok());
  ASSERT_TRUE(Commit("w2", job.id(), 2, &resp).ok());
  EXPECT_FALSE(resp.granted());
  EXPECT_TRUE(resp.cancel_requested());
}

TEST_F(ServerHardeningTest,
       ReaperLeavesLeasesAloneForOneLeasePeriodAfterStart) {
  StartServer({"--lease-seconds=3", "--reaper-interval-ms=50"});
  const Job job = MustSubmit(env_.Spec("grace"));
  v1::LeaseJobResponse lease = Lease("w1", 5000);
  ASSERT_EQ(lease.job().id(), job.id());
  ASSERT_TRUE(Beat("w1", job.id(), 1).ok());

  // The server is down past the lease deadline.
  env_.Stop(SIGKILL);
  std::this_thread::sleep_for(milliseconds(3300));
  StartServer({"--lease-seconds=3", "--reaper-interval-ms=50"});
  // The reaper has run many passes by now were it not waiting: the worker's
  // first heartbeat after the outage still finds its lease.
  std::this_thread::sleep_for(milliseconds(500));
  grpc::Status renewed = Beat("w1", job.id(), 1);
  EXPECT_TRUE(renewed.ok()) << renewed.error_message();
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(absl::StrContains(env_.ServerLog(), "reaper waits"));

  // Without heartbeats the grace ends and the lease expires as usual.
  Job after;
  for (int i = 0; i < 100; ++i) {  // At most 10 s.
    after = Get(job.id());
    if (after.state() == v1::JOB_STATE_QUEUED) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(after.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(after.attempt(), 1);
}

TEST_F(ServerHardeningTest, OpenWatchesAreCappedAndWorkerRpcsKeepWorking) {
  StartServer({"--max-watches=12", "--max-watches-per-token=8"});
  const Job job = MustSubmit(env_.Spec("watched"));
  // Streams that stay open: the job stays queued while they exist.
  struct Watch {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader;
  };
  std::vector<Watch> open;
  int refused = 0;
  std::string refusal;
  for (int i = 0; i < 40; ++i) {  // Bounded: 40 attempts.
    Watch w;
    w.ctx = ServerEnv::Ctx(kClientToken);
    w.ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
    v1::WatchJobRequest req;
    req.set_job_id(job.id());
    w.reader = client_->WatchJob(w.ctx.get(), req);
    v1::JobEvent event;
    // An accepted watch sends the job's first event (submitted) at once; a
    // refused one ends without any.
    if (w.reader->Read(&event)) {
      open.push_back(std::move(w));
    } else {
      grpc::Status s = w.reader->Finish();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      refusal = s.error_message();
      ++refused;
    }
  }
  EXPECT_EQ(open.size(), 8u);
  EXPECT_EQ(refused, 32);
  EXPECT_TRUE(absl::StrContains(refusal, "--max-watches-per-token")) << refusal;

  // Workers are not affected: a lease, a heartbeat and a commit go through.
  v1::LeaseJobResponse lease = Lease("w1", 2000);
  ASSERT_EQ(lease.job().id(), job.id());
  EXPECT_TRUE(Beat("w1", job.id(), 1).ok());

  const std::string metrics = HttpGet(env_.metrics_address(), "/metrics");
  EXPECT_TRUE(absl::StrContains(
      metrics,
      "care_rpc_rejected_total{method=\"WatchJob\",reason=\"watch_limit_"
      "token\"} 32"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(env_.ServerLog(), "watch refused"));
  for (Watch& w : open) w.ctx->TryCancel();
}

TEST_F(ServerHardeningTest, InvalidUtf8IsInvalidArgumentNamingTheProblem) {
  StartServer();
  v1::JobSpec spec = env_.Spec("utf8");
  (*spec.mutable_labels())["team"] = std::string("n\xC3", 2);  // Cut 'ä'.
  Job job;
  grpc::Status s = Submit(spec, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "UTF-8"))
      << s.error_message();
  const std::string metrics = HttpGet(env_.metrics_address(), "/metrics");
  EXPECT_TRUE(absl::StrContains(
      metrics,
      "care_rpc_rejected_total{method=\"SubmitJob\",reason=\"unparsable_"
      "request\"} 1"))
      << metrics;
  // The server is fine and still answers.
  EXPECT_TRUE(Submit(env_.Spec("utf8-ok"), &job).ok());
}

}  // namespace
}  // namespace care::testing
