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
#include "client/process.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

// stories260K_reference/SOURCE.md, P1 with T = 256, first 16 windows:
// mean NLL 1.353581 from a float64 reference; a float32 forward matches the
// mean to about 1e-4 (same file), so 2e-4 absolute on the mean NLL.
constexpr double kReferenceMeanNll = 1.353581;
constexpr int64_t kReferencePredictions = 4080;

// GET http://address/metrics, body only.
std::string ScrapeMetrics(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  int port = std::stoi(address.substr(address.rfind(':') + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(),
            &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  std::string request =
      absl::StrCat("GET /metrics HTTP/1.0\r\nHost: ", address, "\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of one exact series line ("name{labels} value"), or -1.
double SeriesValue(const std::string& metrics, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) {
        return value;
      }
    }
  }
  return -1;
}

class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CARE_REQUIRE_FIXTURES();
    dir_ = MakeTempDir("worker-service-it");
    ASSERT_FALSE(dir_.empty());
    logs_ = dir_ + "/logs";
    std::filesystem::create_directories(logs_);
    // The spec rules reject ".." (FixturesRoot() may contain one).
    fixtures_ = std::filesystem::weakly_canonical(FixturesRoot()).string();
    model_ = fixtures_ + "/stories260K-hf";
    tokens_ =
        fixtures_ + "/stories260K_reference/tinystories_val_head.tok512.u16";
    StartServer(0);
  }

  void TearDown() override {
    workers_.clear();
    server_.reset();
    if (!HasFailure() && !dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void StartServer(int port) {
    ServerProcess::Options options;
    options.lease_seconds = 2;  // kill -9 test: the re-lease comes quickly.
    options.reaper_interval_ms = 100;
    options.extra_model_roots = {fixtures_};
    options.extra_data_roots = {fixtures_};
    options.port = port;
    auto server = ServerProcess::Start(dir_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  struct WorkerProcess {
    std::unique_ptr<Process> process;
    std::string id;
    std::string metrics;
  };

  WorkerProcess& StartWorker(const std::string& id) {
    auto process = Process::Start(
        {BinaryPath("tests/worker_service/care_eval_worker"), "--server",
         server_->address(), "--token-file", server_->worker_token_file(),
         "--worker-id", id, "--heartbeat-ms", "200", "--lease-wait-ms", "500",
         "--backoff-max-ms", "300", "--threads", "1", "--metrics-listen",
         "127.0.0.1:0"},
        logs_);
    EXPECT_TRUE(process.ok()) << process.status();
    auto worker = std::make_unique<WorkerProcess>();
    worker->process = std::move(*process);
    worker->id = id;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      std::string out = worker->process->Stdout();
      size_t at = out.find(" metrics=");
      if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
        worker->metrics = out.substr(at + 9, out.find('\n', at) - at - 9);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_FALSE(worker->metrics.empty()) << worker->process->Stderr();
    workers_.push_back(std::move(worker));
    return *workers_.back();
  }

  CommandResult Carectl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinaryPath("client/carectl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--server=" + server_->address());
    argv.push_back("--token-file=" + server_->client_token_file());
    return RunCommand(argv, logs_, absl::Seconds(60));
  }

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

  care::v1::Job Get(const std::string& id) {
    CommandResult r = Carectl({"get", id, "--output", "json"});
    care::v1::Job job;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &job).ok())
        << r.out << r.err;
    return job;
  }

  // Polls until `done(job)` or the timeout.
  care::v1::Job WaitFor(const std::string& id,
                        const std::function<bool(const care::v1::Job&)>& done,
                        absl::Duration timeout = absl::Seconds(30)) {
    absl::Time deadline = absl::Now() + timeout;
    care::v1::Job job;
    while (absl::Now() < deadline) {
      job = Get(id);
      if (done(job)) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting on " << id << ": "
                  << job.ShortDebugString();
    return job;
  }

  void ExpectReferencePerplexity(const care::v1::Job& job) {
    ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
        << job.ShortDebugString();
    EXPECT_NEAR(job.report().original().mean_nll(), kReferenceMeanNll, 2e-4);
    EXPECT_EQ(job.report().original().predictions(), kReferencePredictions);
    EXPECT_NEAR(job.report().original().ppl(),
                std::exp(job.report().original().mean_nll()), 1e-9);
  }

  std::string dir_, logs_, fixtures_, model_, tokens_;
  int outputs_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
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
