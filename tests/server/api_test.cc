// ConversionService and WorkerService through generated stubs against the
// real care-server binary: submit/get/list/cancel/events/watch, auth,
// validation, roots, leases, the long poll, health and graceful drain.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server_harness.h"

namespace care::testing {
namespace {

using v1::Job;

class ServerApiTest : public ::testing::Test {
 protected:
  void StartServer(const std::vector<std::string>& extra = {}) {
    ASSERT_TRUE(env_.Start(extra));
    client_ = env_.Client();
    worker_ = env_.Worker();
  }
  grpc::Status Submit(const v1::JobSpec& spec, Job* job,
                      const std::string& token = kClientToken) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    return client_->SubmitJob(ServerEnv::Ctx(token).get(), req, job);
  }
  Job MustSubmit(const v1::JobSpec& spec) {
    Job job;
    grpc::Status s = Submit(spec, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  Job Get(const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    Job job;
    grpc::Status s =
        client_->GetJob(ServerEnv::Ctx(kClientToken).get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  v1::LeaseJobResponse Lease(const std::string& worker, int wait_ms) {
    v1::LeaseJobRequest req;
    req.set_worker_id(worker);
    req.set_device(v1::DEVICE_CPU);
    req.set_wait_ms(wait_ms);
    v1::LeaseJobResponse resp;
    grpc::Status s =
        worker_->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  ServerEnv env_;
  std::unique_ptr<v1::ConversionService::Stub> client_;
  std::unique_ptr<v1::WorkerService::Stub> worker_;
};

TEST_F(ServerApiTest, SubmitGetListCancelAndEvents) {
  StartServer();
  v1::JobSpec spec = env_.Spec("a");
  spec.set_request_id("req-a");
  (*spec.mutable_labels())["team"] = "x";
  Job a = MustSubmit(spec);
  EXPECT_EQ(a.state(), v1::JOB_STATE_QUEUED);
  // Defaults are applied and stored.
  EXPECT_EQ(a.spec().method(), v1::METHOD_CARE);
  EXPECT_EQ(a.spec().max_attempts(), 3);
  EXPECT_EQ(a.spec().calibration().samples(), 256);
  EXPECT_DOUBLE_EQ(a.spec().damping(), 0.01);
  EXPECT_EQ(Get(a.id()).SerializeAsString(), a.SerializeAsString());

  // Idempotency by request_id.
  EXPECT_EQ(MustSubmit(spec).id(), a.id());
  spec.set_priority(3);
  Job dup;
  EXPECT_EQ(Submit(spec, &dup).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  std::vector<std::string> ids = {a.id()};
  for (int i = 0; i < 4; ++i) {
    v1::JobSpec s = env_.Spec(absl::StrCat("j", i));
    (*s.mutable_labels())["team"] = i % 2 ? "x" : "y";
    ids.push_back(MustSubmit(s).id());
  }
  v1::CancelJobRequest cancel;
  cancel.set_job_id(ids[1]);
  Job cancelled;
  ASSERT_TRUE(
      client_->CancelJob(ServerEnv::Ctx(kClientToken).get(), cancel, &cancelled)
          .ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);

  // Pages of 2, newest first.
  v1::ListJobsRequest list;
  list.set_page_size(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    v1::ListJobsResponse resp;
    ASSERT_TRUE(
        client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), list, &resp)
            .ok());
    EXPECT_LE(resp.jobs_size(), 2);
    for (const Job& j : resp.jobs()) seen.push_back(j.id());
    if (resp.next_page_token().empty()) break;
    list.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));
  // Filters: label and state.
  v1::ListJobsRequest filtered;
  (*filtered.mutable_labels())["team"] = "x";
  filtered.add_states(v1::JOB_STATE_QUEUED);
  v1::ListJobsResponse resp;
  ASSERT_TRUE(
      client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), filtered, &resp)
          .ok());
  ASSERT_EQ(resp.jobs_size(), 3);  // a, j1, j3 carry team=x.
  EXPECT_EQ(resp.jobs(0).id(), ids[4]);
  EXPECT_EQ(resp.jobs(1).id(), ids[2]);
  EXPECT_EQ(resp.jobs(2).id(), ids[0]);
  filtered.set_page_token("garbage");
  EXPECT_EQ(
      client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), filtered, &resp)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);

  // Events: the cancelled job has QUEUED then CANCELLED, one per page.
  v1::ListJobEventsRequest ev;
  ev.set_job_id(ids[1]);
  ev.set_page_size(1);
  v1::ListJobEventsResponse events;
  ASSERT_TRUE(
      client_->ListJobEvents(ServerEnv::Ctx(kClientToken).get(), ev, &events)
          .ok());
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_EQ(events.events(0).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(events.next_after_sequence(), 1);
  ev.set_after_sequence(1);
  ASSERT_TRUE(
      client_->ListJobEvents(ServerEnv::Ctx(kClientToken).get(), ev, &events)
          .ok());
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_EQ(events.events(0).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(events.next_after_sequence(), 0);

  v1::GetJobRequest get;
  get.set_job_id("job-nope");
  Job job;
  EXPECT_EQ(client_->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  get.clear_job_id();
  EXPECT_EQ(client_->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerApiTest, AuthFailuresAndNoSecretsInLogs) {
  StartServer();
  Job job;
  EXPECT_EQ(Submit(env_.Spec("a"), &job, "").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      Submit(env_.Spec("a"), &job, "wrong-token-wrong-token").error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit(env_.Spec("a"), &job, kWorkerToken).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::LeaseJobRequest lease;
  lease.set_worker_id("w");
  lease.set_wait_ms(1);
  v1::LeaseJobResponse resp;
  EXPECT_EQ(
      worker_->LeaseJob(ServerEnv::Ctx("").get(), lease, &resp).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(worker_->LeaseJob(ServerEnv::Ctx(kClientToken).get(), lease, &resp)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(
      worker_->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), lease, &resp).ok());
  EXPECT_EQ(env_.Stop(SIGTERM), 0);
  const std::string log = env_.ServerLog();
  EXPECT_NE(log.find("UNAUTHENTICATED"), std::string::npos) << log;
  EXPECT_EQ(log.find(kClientToken), std::string::npos);
  EXPECT_EQ(log.find(kWorkerToken), std::string::npos);
  EXPECT_EQ(log.find("wrong-token-wrong-token"), std::string::npos);
}

TEST_F(ServerApiTest, EveryInvalidSpecClassNamesTheField) {
  StartServer();
  const std::string dir = env_.dir();
  std::filesystem::create_directory_symlink("/etc", dir + "/models/etc");
  using Mutation = std::function<void(v1::JobSpec&)>;
  const std::vector<std::pair<std::string, Mutation>> cases = {
      {"model_uri", [](auto& s) { s.clear_model_uri(); }},
      {"model_uri", [](auto& s) { s.set_model_uri("models/relative"); }},
      {"model_uri", [](auto& s) { s.set_model_uri("s3://bucket/m"); }},
      {"output_uri", [](auto& s) { s.clear_output_uri(); }},
      {"kv_budget", [](auto& s) { s.clear_kv_budget(); }},
      {"kv_budget.kv_save_fraction",
       [](auto& s) { s.mutable_kv_budget()->set_kv_save_fraction(1.0); }},
      {"kv_budget.rank_per_matrix",
       [](auto& s) { s.mutable_kv_budget()->set_rank_per_matrix(0); }},
      {"method", [](auto& s) { s.set_method(static_cast<v1::Method>(42)); }},
      {"rank_allocation",
       [](auto& s) {
         s.set_rank_allocation(static_cast<v1::RankAllocation>(42));
       }},
      {"output_dtype",
       [](auto& s) { s.set_output_dtype(static_cast<v1::OutputDtype>(42)); }},
      {"device", [](auto& s) { s.set_device(static_cast<v1::Device>(42)); }},
      {"calibration.dataset_uri",
       [](auto& s) { s.mutable_calibration()->clear_dataset_uri(); }},
      {"calibration.samples",
       [](auto& s) { s.mutable_calibration()->set_samples(-1); }},
      {"calibration.sequence_length",
       [](auto& s) { s.mutable_calibration()->set_sequence_length(1); }},
      {"calibration.text_field",
       [](auto& s) {
         s.mutable_calibration()->set_text_field(std::string(200, 'f'));
       }},
      {"evaluation.dataset_uri",
       [](auto& s) { s.mutable_evaluation()->set_window_length(64); }},
      {"evaluation.window_length",
       [dir](auto& s) {
         s.mutable_evaluation()->set_dataset_uri(dir + "/data/e.txt");
         s.mutable_evaluation()->set_window_length(1);
       }},
      {"evaluation.max_windows",
       [dir](auto& s) {
         s.mutable_evaluation()->set_dataset_uri(dir + "/data/e.txt");
         s.mutable_evaluation()->set_max_windows(-1);
       }},
      {"labels[Bad Key]",
       [](auto& s) { (*s.mutable_labels())["Bad Key"] = "v"; }},
      {"labels",
       [](auto& s) {
         for (int i = 0; i < 33; ++i) {
           s.mutable_labels()->insert({absl::StrCat("k", i), "v"});
         }
       }},
      {"request_id", [](auto& s) { s.set_request_id("has space"); }},
      {"damping", [](auto& s) { s.set_damping(2.0); }},
      {"priority", [](auto& s) { s.set_priority(5000); }},
      {"max_attempts", [](auto& s) { s.set_max_attempts(50); }},
      // Roots.
      {"model_uri", [](auto& s) { s.set_model_uri("/usr/share"); }},
      {"model_uri",
       [dir](auto& s) { s.set_model_uri(dir + "/models/../data"); }},
      {"model_uri",
       [dir](auto& s) { s.set_model_uri(dir + "/models/etc/ssl"); }},
      {"output_uri",
       [dir](auto& s) { s.set_output_uri(dir + "/models/tiny/out"); }},
      {"output_uri", [dir](auto& s) { s.set_output_uri(dir + "/out"); }},
      {"calibration.dataset_uri",
       [](auto& s) {
         s.mutable_calibration()->set_dataset_uri("/etc/passwd");
       }},
      {"evaluation.dataset_uri",
       [](auto& s) { s.mutable_evaluation()->set_dataset_uri("/etc/hosts"); }},
  };
  for (const auto& [field, mutate] : cases) {
    v1::JobSpec spec = env_.Spec("o");
    mutate(spec);
    Job job;
    grpc::Status s = Submit(spec, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_EQ(s.error_message().rfind(field + ":", 0), 0u)
        << "expected '" << field << ":', got '" << s.error_message() << "'";
  }
  // None of them created a job; the server is still healthy.
  v1::ListJobsResponse resp;
  ASSERT_TRUE(client_
                  ->ListJobs(ServerEnv::Ctx(kClientToken).get(),
                             v1::ListJobsRequest(), &resp)
                  .ok());
  EXPECT_EQ(resp.jobs_size(), 0);
  MustSubmit(env_.Spec("fine"));
}

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
