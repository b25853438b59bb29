// Runs the real care-server binary for integration tests: a temp directory
// with model/data/output roots and token files, the server on ephemeral
// loopback ports (parsed from its "listening grpc=... metrics=..." line), and
// authenticated stubs. Also a minimal HTTP GET for /metrics.
#ifndef CARE_TESTS_SERVER_SERVER_HARNESS_H_
#define CARE_TESTS_SERVER_SERVER_HARNESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "care/v1/conversion_service.grpc.pb.h"
#include "care/v1/worker_service.grpc.pb.h"

namespace care::testing {

inline constexpr char kClientToken[] = "client-token-0123456789abcdef";
inline constexpr char kWorkerToken[] = "worker-token-0123456789abcdef";

class ServerEnv {
 public:
  // Creates the temp directory tree and token files.
  ServerEnv();
  ~ServerEnv();  // Kills a running server; removes the directory.

  // Starts care-server with the standard flags plus `extra`; false (and a
  // gtest failure) when it did not print its listening line within 10 s.
  bool Start(const std::vector<std::string>& extra = {});
  // Sends `sig` and waits up to `timeout_s` for exit; returns the wait
  // status, or -1 on timeout (the process is then killed).
  int Stop(int sig, double timeout_s = 15);
  bool running() const { return pid_ > 0; }

  std::unique_ptr<v1::ConversionService::Stub> Client();
  std::unique_ptr<v1::WorkerService::Stub> Worker();
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  // A context with a 10 s deadline and, when `token` is non-empty, the
  // "authorization: Bearer <token>" metadata.
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token);

  // A valid spec whose paths lie inside the roots.
  v1::JobSpec Spec(const std::string& output_name) const;

  const std::string& dir() const { return dir_; }
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  std::string ServerLog() const;

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int starts_ = 0;
  std::string grpc_address_;
  std::string metrics_address_;
  std::shared_ptr<grpc::Channel> channel_;
};

// GET http://address/path over a plain socket; the body, or "" on error.
std::string HttpGet(const std::string& address, const std::string& path);

}  // namespace care::testing

#endif  // CARE_TESTS_SERVER_SERVER_HARNESS_H_
