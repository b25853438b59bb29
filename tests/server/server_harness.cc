#include "server_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "support/fixtures.h"

namespace care::testing {

ServerEnv::ServerEnv() {
  dir_ = MakeTempDir("care-server-it");
  for (const char* d : {"models/tiny", "data", "out"}) {
    std::filesystem::create_directories(dir_ + "/" + d);
  }
  std::ofstream(dir_ + "/client.tokens") << "# clients\n"
                                         << kClientToken << "\n";
  std::ofstream(dir_ + "/worker.tokens") << kWorkerToken << "\n";
}

ServerEnv::~ServerEnv() {
  if (pid_ > 0) Stop(SIGKILL, 5);
  if (!::testing::Test::HasFailure() && !getenv("CARE_KEEP_TEST_DIRS")) {
    std::filesystem::remove_all(dir_);
  }
}

bool ServerEnv::Start(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      BinaryPath("server/care-server"),
      "--listen=127.0.0.1:0",
      "--metrics-listen=127.0.0.1:0",
      "--db=" + dir_ + "/jobs.db",
      "--client-token-file=" + dir_ + "/client.tokens",
      "--worker-token-file=" + dir_ + "/worker.tokens",
      "--model-root=" + dir_ + "/models",
      "--data-root=" + dir_ + "/data",
      "--output-root=" + dir_ + "/out",
      "--poll-interval-ms=200",
      "--drain-seconds=5",
      "--log-level=debug"};
  args.insert(args.end(), extra.begin(), extra.end());
  const std::string log = absl::StrCat(dir_, "/server-", starts_++, ".log");

  int out[2];
  if (pipe(out) != 0) {
    ADD_FAILURE() << "pipe failed";
    return false;
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, STDERR_FILENO);
    close(out[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  pid_ = pid;
  std::string text;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (text.find('\n') == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  const std::string prefix = "listening grpc=";
  const size_t g = text.find(prefix);
  const size_t m = text.find(" metrics=");
  const size_t nl = text.find('\n');
  if (g != 0 || m == std::string::npos || nl == std::string::npos) {
    ADD_FAILURE() << "care-server did not start; stdout: '" << text
                  << "' log:\n"
                  << ServerLog();
    Stop(SIGKILL, 5);
    return false;
  }
  grpc_address_ = text.substr(prefix.size(), m - prefix.size());
  metrics_address_ = text.substr(m + 9, nl - m - 9);
  channel_ =
      grpc::CreateChannel(grpc_address_, grpc::InsecureChannelCredentials());
  return true;
}

int ServerEnv::Stop(int sig, double timeout_s) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  return status;
}

std::string ServerEnv::ServerLog() const {
  std::string all;
  for (int i = 0; i < starts_; ++i) {
    std::ifstream in(absl::StrCat(dir_, "/server-", i, ".log"));
    std::stringstream s;
    s << in.rdbuf();
    all += s.str();
  }
  return all;
}

std::unique_ptr<v1::ConversionService::Stub> ServerEnv::Client() {
  return v1::ConversionService::NewStub(channel_);
}

std::unique_ptr<v1::WorkerService::Stub> ServerEnv::Worker() {
  return v1::WorkerService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> ServerEnv::Ctx(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

v1::JobSpec ServerEnv::Spec(const std::string& output_name) const {
  v1::JobSpec spec;
  spec.set_model_uri("file://" + dir_ + "/models/tiny");
  spec.set_output_uri(dir_ + "/out/" + output_name);
  spec.mutable_kv_budget()->set_kv_save_fraction(0.5);
  spec.mutable_calibration()->set_dataset_uri(dir_ + "/data/calib.txt");
  return spec;
}

std::string HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  const std::string host = address.substr(0, colon);
  const int port = std::stoi(address.substr(colon + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + host +
                              "\r\nConnection: close\r\n\r\n";
  if (write(fd, request.data(), request.size()) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || body == std::string::npos ||
      response.find(" 200 ") == std::string::npos) {
    return "";
  }
  return response.substr(body + 4);
}

}  // namespace care::testing
