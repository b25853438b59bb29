// A loopback cluster for tests: care-server with a temporary database and
// the fixtures as model/data roots, worker processes, and carectl.
#ifndef CARE_TESTS_WORKER_SERVICE_CLUSTER_TEST_BASE_H_
#define CARE_TESTS_WORKER_SERVICE_CLUSTER_TEST_BASE_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "care/v1/job.pb.h"
#include "client/process.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::testing {

// GET http://address/metrics, body only.
inline std::string ScrapeMetrics(const std::string& address) {
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
inline double SeriesValue(const std::string& metrics,
                          const std::string& series) {
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

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CARE_REQUIRE_FIXTURES();
    dir_ = MakeTempDir("care-cluster");
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

  void StartServer(int port, int lease_seconds = 2) {
    ServerProcess::Options options;
    // kill -9 test: the re-lease comes quickly.
    options.lease_seconds = lease_seconds;
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

  // `binary`: care_eval_worker (test runner) or care-worker serve.
  WorkerProcess& StartWorker(const std::string& id,
                             std::vector<std::string> binary = {BinaryPath(
                                 "tests/worker_service/care_eval_worker")}) {
    std::vector<std::string> argv = std::move(binary);
    argv.insert(argv.end(), {"--server", server_->address(), "--token-file",
                             server_->worker_token_file(), "--worker-id", id,
                             "--heartbeat-ms", "200", "--lease-wait-ms", "500",
                             "--backoff-max-ms", "300", "--threads", "1",
                             "--metrics-listen", "127.0.0.1:0"});
    auto process = Process::Start(argv, logs_);
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
      if (job.state() >= care::v1::JOB_STATE_SUCCEEDED) break;  // Terminal.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "gave up waiting on " << id << ": "
                  << job.ShortDebugString();
    return job;
  }

  std::string dir_, logs_, fixtures_, model_, tokens_;
  int outputs_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
};

}  // namespace care::testing

#endif  // CARE_TESTS_WORKER_SERVICE_CLUSTER_TEST_BASE_H_
