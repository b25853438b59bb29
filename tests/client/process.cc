#include "client/process.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "support/fixtures.h"

namespace care::testing {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& dir, const Options& options) {
  auto server = std::make_unique<ServerProcess>();
  server->dir_ = dir;
  for (const char* sub : {"models", "data", "outputs", "logs"}) {
    std::filesystem::create_directories(dir + "/" + sub);
  }
  server->client_token_file_ = dir + "/client.token";
  server->worker_token_file_ = dir + "/worker.token";
  std::ofstream(server->client_token_file_) << server->client_token() << "\n";
  std::ofstream(server->worker_token_file_) << server->worker_token() << "\n";
  std::vector<std::string> argv = {
      BinaryPath("server/care-server"),
      absl::StrCat("--listen=127.0.0.1:", options.port),
      "--metrics-listen=127.0.0.1:0",
      "--db=" + dir + "/jobs.db",
      "--client-token-file=" + server->client_token_file_,
      "--worker-token-file=" + server->worker_token_file_,
      "--model-root=" + dir + "/models",
      "--data-root=" + dir + "/data",
      "--output-root=" + dir + "/outputs",
      absl::StrCat("--lease-seconds=", options.lease_seconds),
      absl::StrCat("--reaper-interval-ms=", options.reaper_interval_ms),
      absl::StrCat("--max-wait-ms=", options.max_wait_ms),
      absl::StrCat("--poll-interval-ms=", options.poll_interval_ms),
      "--log-level=warn"};
  for (const auto& root : options.extra_model_roots) {
    argv.push_back("--model-root=" + root);
  }
  for (const auto& root : options.extra_data_roots) {
    argv.push_back("--data-root=" + root);
  }
  auto process = Process::Start(argv, dir + "/logs");
  if (!process.ok()) return process.status();
  server->process_ = std::move(*process);
  // Wait for "listening grpc=HOST:PORT metrics=HOST:PORT".
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    std::string out = server->process_->Stdout();
    size_t at = out.find("listening grpc=");
    size_t end = out.find('\n', at);
    if (at != std::string::npos && end != std::string::npos) {
      std::string line = out.substr(at, end - at);
      size_t g = line.find("grpc=") + 5;
      size_t m = line.find(" metrics=");
      server->address_ = line.substr(g, m - g);
      server->metrics_address_ = line.substr(m + 9);
      return server;
    }
    if (!server->process_->Running()) {
      return absl::InternalError(absl::StrCat(
          "care-server exited during startup: ", server->process_->Stderr()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "care-server did not print its address: ", server->process_->Stderr()));
}

}  // namespace care::testing
