// Streams, leases and transport against the real care-server binary:
// watch (also with a slow reader), the long poll, lease expiry and fencing,
// cancel through the worker, health, graceful drain, TLS and size limits.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "api_fixture.h"

namespace care::testing {
namespace {

TEST_F(ServerApiTest, WatchStreamsEventsUntilTerminal) {
  StartServer();
  const Job job = MustSubmit(env_.Spec("w"));
  auto watched = std::async(std::launch::async, [&] {
    v1::WatchJobRequest req;
    req.set_job_id(job.id());
    auto ctx = ServerEnv::Ctx(kClientToken);
    auto stream = client_->WatchJob(ctx.get(), req);
    std::vector<v1::JobEvent> events;
    v1::JobEvent e;
    while (stream->Read(&e)) events.push_back(e);
    EXPECT_TRUE(stream->Finish().ok());
    return events;
  });
  v1::LeaseJobResponse lease = Lease("w1", 5000);
  ASSERT_EQ(lease.job().id(), job.id());
  EXPECT_EQ(lease.attempt(), 1);
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_job_id(job.id());
  hb.set_attempt(1);
  hb.mutable_progress()->set_stage(v1::STAGE_DECOMPOSING);
  hb.mutable_progress()->set_layer_count(2);
  hb.add_layers()->set_layer(0);
  v1::HeartbeatResponse hb_resp;
  ASSERT_TRUE(
      worker_->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), hb, &hb_resp)
          .ok());
  EXPECT_FALSE(hb_resp.cancel_requested());
  EXPECT_GE(hb_resp.lease_deadline().seconds(),
            lease.lease_deadline().seconds());
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(job.id());
  done.set_attempt(1);
  done.mutable_report()->set_kv_width_before(64);
  v1::CompleteJobResponse done_resp;
  ASSERT_TRUE(
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done, &done_resp)
          .ok());
  EXPECT_EQ(done_resp.job().state(), v1::JOB_STATE_SUCCEEDED);

  ASSERT_EQ(watched.wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  std::vector<v1::JobEvent> events = watched.get();
  ASSERT_EQ(events.size(), 5u);  // QUEUED, RUNNING, STAGE, LAYER, SUCCEEDED.
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(events[2].type(), v1::EVENT_TYPE_STAGE_CHANGED);
  EXPECT_EQ(events[3].type(), v1::EVENT_TYPE_LAYER_DONE);
  EXPECT_EQ(events[4].state(), v1::JOB_STATE_SUCCEEDED);

  // Watching a finished job from its end returns at once, from 3 replays 2.
  for (int after : {5, 3}) {
    v1::WatchJobRequest req;
    req.set_job_id(job.id());
    req.set_after_sequence(after);
    auto ctx = ServerEnv::Ctx(kClientToken);
    auto stream = client_->WatchJob(ctx.get(), req);
    int n = 0;
    v1::JobEvent e;
    while (stream->Read(&e)) ++n;
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(n, 5 - after);
  }
}

TEST_F(ServerApiTest, SlowWatcherNeitherBlocksWritersNorLosesEvents) {
  StartServer({"--log-level=warn"});
  const Job job = MustSubmit(env_.Spec("slow"));
  // A watcher that reads nothing yet: its flow-control window fills up.
  v1::WatchJobRequest wreq;
  wreq.set_job_id(job.id());
  auto wctx = ServerEnv::Ctx(kClientToken);
  wctx->set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
  auto stream = client_->WatchJob(wctx.get(), wreq);

  v1::LeaseJobResponse lease = Lease("w1", 2000);
  ASSERT_EQ(lease.job().id(), job.id());
  constexpr int kHeartbeats = 40, kLayersPerBeat = 50;
  const auto t0 = std::chrono::steady_clock::now();
  for (int h = 0; h < kHeartbeats; ++h) {
    v1::HeartbeatRequest hb;
    hb.set_worker_id("w1");
    hb.set_job_id(job.id());
    hb.set_attempt(1);
    for (int l = 0; l < kLayersPerBeat; ++l) {
      v1::LayerReport* layer = hb.add_layers();
      layer->set_layer(h * kLayersPerBeat + l);
      layer->set_k_relative_error(0.125);
    }
    v1::HeartbeatResponse resp;
    ASSERT_TRUE(
        worker_->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), hb, &resp).ok());
  }
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(job.id());
  done.set_attempt(1);
  v1::CompleteJobResponse done_resp;
  ASSERT_TRUE(
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done, &done_resp)
          .ok());
  // The writers never waited for the watcher (2000 events, a few seconds at
  // most even on a loaded machine).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));

  // Now read slowly: every event arrives, in order, ending terminal.
  int64_t expected = 1;
  v1::JobEvent e;
  while (stream->Read(&e)) {
    EXPECT_EQ(e.sequence(), expected++);
    if (expected % 500 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  // QUEUED, RUNNING, one LAYER_DONE per layer, SUCCEEDED.
  EXPECT_EQ(expected - 1, 2 + kHeartbeats * kLayersPerBeat + 1);
  EXPECT_EQ(e.state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ServerApiTest, LeasesExpireAreFencedAndCancelReachesTheWorker) {
  StartServer({"--lease-seconds=1", "--reaper-interval-ms=100"});
  // An empty queue: the long poll returns empty after about wait_ms.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(Lease("w1", 300).has_job());
  EXPECT_GE(std::chrono::steady_clock::now() - t0,
            std::chrono::milliseconds(250));
  // A waiting poll is woken by a submit, well before its wait ends.
  auto waiting =
      std::async(std::launch::async, [&] { return Lease("w1", 8000); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  t0 = std::chrono::steady_clock::now();
  v1::JobSpec spec = env_.Spec("x");
  spec.set_max_attempts(2);
  const Job job = MustSubmit(spec);
  v1::LeaseJobResponse first = waiting.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  ASSERT_EQ(first.job().id(), job.id());
  EXPECT_EQ(first.attempt(), 1);

  // w1 goes silent: the reaper requeues within ~1 s, w2 gets attempt 2.
  v1::LeaseJobResponse second = Lease("w2", 5000);
  ASSERT_EQ(second.job().id(), job.id());
  EXPECT_EQ(second.attempt(), 2);
  v1::HeartbeatRequest stale;
  stale.set_worker_id("w1");
  stale.set_job_id(job.id());
  stale.set_attempt(1);
  v1::HeartbeatResponse hb;
  EXPECT_EQ(worker_->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), stale, &hb)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  Job cancelling;
  ASSERT_TRUE(
      client_
          ->CancelJob(ServerEnv::Ctx(kClientToken).get(), cancel, &cancelling)
          .ok());
  EXPECT_EQ(cancelling.state(), v1::JOB_STATE_CANCELLING);
  v1::HeartbeatRequest live = stale;
  live.set_worker_id("w2");
  live.set_attempt(2);
  ASSERT_TRUE(
      worker_->Heartbeat(ServerEnv::Ctx(kWorkerToken).get(), live, &hb).ok());
  EXPECT_TRUE(hb.cancel_requested());
  v1::CompleteJobRequest stop;
  stop.set_worker_id("w2");
  stop.set_job_id(job.id());
  stop.set_attempt(2);
  stop.set_cancelled(true);
  v1::CompleteJobResponse stopped;
  ASSERT_TRUE(
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), stop, &stopped)
          .ok());
  EXPECT_EQ(stopped.job().state(), v1::JOB_STATE_CANCELLED);

  // A retryable failure on the last attempt fails the job.
  v1::JobSpec once = env_.Spec("y");
  once.set_max_attempts(1);
  const Job j2 = MustSubmit(once);
  v1::LeaseJobResponse l2 = Lease("w2", 2000);
  ASSERT_EQ(l2.job().id(), j2.id());
  v1::FailJobRequest fail;
  fail.set_worker_id("w2");
  fail.set_job_id(j2.id());
  fail.set_attempt(1);
  fail.set_retryable(true);
  fail.mutable_failure()->set_reason(v1::FAILURE_REASON_INFRASTRUCTURE);
  fail.mutable_failure()->set_message("out of memory in layer 3");
  v1::FailJobResponse failed;
  ASSERT_TRUE(
      worker_->FailJob(ServerEnv::Ctx(kWorkerToken).get(), fail, &failed).ok());
  EXPECT_EQ(failed.job().state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Get(j2.id()).failure().reason(), v1::FAILURE_REASON_INFRASTRUCTURE);
}

TEST_F(ServerApiTest, HealthServingAndSigtermDrainsCleanly) {
  StartServer();
  grpc::GenericStub generic(env_.channel());
  grpc::Slice empty("");  // An empty HealthCheckRequest: every service.
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  grpc::ClientContext ctx;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                    &request, &response,
                    [&](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING.

  // A watcher of a queued job is released by the drain, not left hanging.
  const Job job = MustSubmit(env_.Spec("d"));
  auto watcher = std::async(std::launch::async, [&] {
    v1::WatchJobRequest req;
    req.set_job_id(job.id());
    auto wctx = ServerEnv::Ctx(kClientToken);
    auto stream = client_->WatchJob(wctx.get(), req);
    v1::JobEvent e;
    while (stream->Read(&e)) {
    }
    return stream->Finish();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  const int status = env_.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_EQ(watcher.wait_for(std::chrono::seconds(5)),
            std::future_status::ready);
  EXPECT_EQ(watcher.get().error_code(), grpc::StatusCode::UNAVAILABLE);
  const std::string log = env_.ServerLog();
  EXPECT_NE(log.find("msg=draining"), std::string::npos) << log;
  EXPECT_NE(log.find("msg=stopped"), std::string::npos) << log;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(ServerApiTest, ServesTlsAndEnforcesMessageLimits) {
  const std::string data = CARE_SERVER_TESTDATA;
  StartServer({"--tls-cert=" + data + "/tls.crt",
               "--tls-key=" + data + "/tls.key", "--max-message-bytes=4096"});
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadText(data + "/tls.crt");
  auto tls = v1::ConversionService::NewStub(
      grpc::CreateChannel(env_.grpc_address(), grpc::SslCredentials(ssl)));
  v1::SubmitJobRequest req;
  *req.mutable_spec() = env_.Spec("tls");
  Job job;
  grpc::Status s =
      tls->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  // Plaintext against the TLS port does not get through.
  EXPECT_FALSE(Submit(env_.Spec("plain"), &job).ok());
  // Over the limit: refused by gRPC before any handler runs.
  for (int i = 0; i < 20; ++i) {
    (*req.mutable_spec()->mutable_labels())[absl::StrCat("k", i)] =
        std::string(250, 'v');
  }
  EXPECT_EQ(tls->SubmitJob(ServerEnv::Ctx(kClientToken).get(), req, &job)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace care::testing
