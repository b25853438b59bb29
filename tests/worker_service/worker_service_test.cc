// The worker's side of the job protocol with real processes on loopback:
// care-server, workers running the PerplexityRunner (real engine work on the
// stories260K fixture), and carectl. Covers leasing and reporting, cancel at
// a layer boundary, kill -9 and re-lease with attempt 2 plus fencing of the
// dead attempt, SIGTERM release, failure classes with the worker serving on,
// and the worker's /metrics.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "care/v1/worker_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"
#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

// stories260K_reference/SOURCE.md, P1 with T = 256, first 16 windows:
// mean NLL 1.353581 from a float64 reference; a float32 forward matches the
// mean to about 1e-4 (same file), so 2e-4 absolute on the mean NLL.
constexpr double kReferenceMeanNll = 1.353581;
constexpr int64_t kReferencePredictions = 4080;

class WorkerServiceTest : public ClusterTest {
 protected:
  // Submits an evaluation job; returns its id.
  std::string Submit(const std::string& delay_ms,
                     const std::string& eval = "") {
    std::vector<std::string> args = {
        "submit",         "--quiet",
        "--model",        model_,
        "--out",          absl::StrCat(dir_, "/outputs/o", ++outputs_),
        "--kv-save",      "0.5",
        "--calib",        tokens_,
        "--eval",         eval.empty() ? tokens_ : eval,
        "--eval-seq-len", "256",
        "--eval-windows", "16"};
    if (!delay_ms.empty()) {
      args.push_back("--label");
      args.push_back("test.layer-delay-ms=" + delay_ms);
    }
    CommandResult r = Carectl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }

  void ExpectReferencePerplexity(const care::v1::Job& job) {
    ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
        << job.ShortDebugString();
    EXPECT_NEAR(job.report().original().mean_nll(), kReferenceMeanNll, 2e-4);
    EXPECT_EQ(job.report().original().predictions(), kReferencePredictions);
    EXPECT_NEAR(job.report().original().ppl(),
                std::exp(job.report().original().mean_nll()), 1e-9);
  }
};

TEST_F(WorkerServiceTest, RunsAJobAndReportsTheMeasuredPerplexity) {
  WorkerProcess& worker = StartWorker("w1");
  std::string id = Submit("");
  CommandResult watch = Carectl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  care::v1::Job job = Get(id);
  ExpectReferencePerplexity(job);
  EXPECT_EQ(job.attempt(), 1);
  // Progress went through the heartbeats: the events show the stages.
  CommandResult events = Carectl({"events", id});
  EXPECT_THAT(events.out, HasSubstr("evaluating"));

  std::string metrics = ScrapeMetrics(worker.metrics);
  EXPECT_EQ(
      SeriesValue(metrics, "care_worker_jobs_total{outcome=\"succeeded\"}"), 1);
  // stories260K has 5 layers, each evaluated once.
  EXPECT_EQ(
      SeriesValue(metrics,
                  "care_worker_layers_processed_total{stage=\"evaluating\"}"),
      5);
  EXPECT_GT(
      SeriesValue(metrics,
                  "care_worker_stage_seconds_total{stage=\"evaluating\"}"),
      0);
  EXPECT_GT(SeriesValue(metrics, "care_worker_peak_rss_bytes"), 1e6);
  EXPECT_EQ(SeriesValue(metrics, "care_worker_busy"), 0);
}

TEST_F(WorkerServiceTest, CancelStopsAtTheNextLayerBoundary) {
  StartWorker("w1");
  std::string id = Submit("400");  // 5 layers x 400 ms.
  WaitFor(id, [](const care::v1::Job& j) {
    return j.progress().stage() == care::v1::STAGE_EVALUATING;
  });
  absl::Time cancelled_at = absl::Now();
  CommandResult cancel = Carectl({"cancel", id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  CommandResult watch = Carectl({"watch", id});
  EXPECT_EQ(watch.exit_code, 2) << watch.out << watch.err;
  // Within one layer (400 ms) plus heartbeat (200 ms) and scheduling slack.
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(2));
  care::v1::Job job = Get(id);
  EXPECT_EQ(job.state(), care::v1::JOB_STATE_CANCELLED);
  EXPECT_LT(job.progress().layer(), 4);
  EXPECT_FALSE(std::filesystem::exists(job.spec().output_uri()));
}

TEST_F(WorkerServiceTest, KilledWorkersJobFinishesElsewhereAsAttemptTwo) {
  WorkerProcess& first = StartWorker("w1");
  std::string id = Submit("300");
  care::v1::Job running = WaitFor(id, [](const care::v1::Job& j) {
    return j.progress().stage() == care::v1::STAGE_EVALUATING;
  });
  ASSERT_EQ(running.worker_id(), "w1");
  first.process->Signal(SIGKILL);
  ASSERT_TRUE(first.process->Wait(absl::Seconds(5)).ok());
  StartWorker("w2");
  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(40));
  ExpectReferencePerplexity(job);
  EXPECT_EQ(job.attempt(), 2);
  EXPECT_EQ(job.worker_id().empty() ? std::string("w2") : job.worker_id(),
            "w2");

  // The dead attempt's late CompleteJob (as if w1 had come back) is fenced.
  auto stub = care::v1::WorkerService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + server_->worker_token());
  care::v1::CompleteJobRequest late;
  late.set_worker_id("w1");
  late.set_job_id(id);
  late.set_attempt(1);
  care::v1::CompleteJobResponse response;
  EXPECT_EQ(stub->CompleteJob(&context, late, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  CommandResult events = Carectl({"events", id});
  EXPECT_THAT(events.out, HasSubstr("lease-expired"));
}

TEST_F(WorkerServiceTest, SigtermReleasesTheJobForTheNextWorker) {
  WorkerProcess& first = StartWorker("w1");
  std::string id = Submit("300");
  WaitFor(id, [](const care::v1::Job& j) {
    return j.progress().stage() == care::v1::STAGE_EVALUATING;
  });
  first.process->Signal(SIGTERM);
  auto code = first.process->Wait(absl::Seconds(5));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << first.process->Stderr();
  EXPECT_THAT(first.process->Stderr(), HasSubstr("SIGTERM"));
  care::v1::Job released = Get(id);
  EXPECT_EQ(released.state(), care::v1::JOB_STATE_QUEUED)
      << released.ShortDebugString();
  StartWorker("w2");
  care::v1::Job job =
      WaitFor(id, [](const care::v1::Job& j) { return j.state() >= 4; });
  ExpectReferencePerplexity(job);
  EXPECT_EQ(job.attempt(), 2);
}

TEST_F(WorkerServiceTest, UserInputFailureIsFinalAndTheWorkerServesOn) {
  WorkerProcess& worker = StartWorker("w1");
  std::filesystem::create_directories(dir_ + "/data");
  // A token file whose size is not a multiple of 2 bytes: corrupt input.
  const std::string bad = dir_ + "/data/odd.u16";
  std::ofstream(bad) << "abc";
  std::string failing = Submit("", bad);
  CommandResult watch = Carectl({"watch", failing});
  EXPECT_EQ(watch.exit_code, 1) << watch.err;
  care::v1::Job failed = Get(failing);
  EXPECT_EQ(failed.failure().reason(), care::v1::FAILURE_REASON_USER_INPUT);
  EXPECT_THAT(failed.failure().message(), HasSubstr("odd.u16"));
  EXPECT_EQ(failed.attempt(), 1);  // Final: not retried.

  std::string next = Submit("");
  EXPECT_EQ(Carectl({"watch", next}).exit_code, 0);
  ExpectReferencePerplexity(Get(next));
  std::string metrics = ScrapeMetrics(worker.metrics);
  EXPECT_EQ(SeriesValue(metrics, "care_worker_jobs_total{outcome=\"failed\"}"),
            1);
}

TEST_F(WorkerServiceTest, WorkerWaitsOutAServerRestart) {
  const std::string address = server_->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  server_->process().Signal(SIGKILL);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(5)).ok());
  WorkerProcess& worker = StartWorker("w1");
  // The worker backs off while nothing listens...
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_THAT(worker.process->Stderr(), HasSubstr("cannot lease"));
  EXPECT_TRUE(worker.process->Running());
  // ...and serves once the server is back on the same address and database.
  StartServer(port);
  std::string id = Submit("");
  CommandResult watch = Carectl({"watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  ExpectReferencePerplexity(Get(id));
}

}  // namespace
}  // namespace care::testing
