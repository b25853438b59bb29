// care-server from this build on ephemeral loopback ports with a temporary
// database, token files and roots (processes: support/process.h).
#ifndef CARE_TESTS_CLIENT_PROCESS_H_
#define CARE_TESTS_CLIENT_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "support/process.h"

namespace care::testing {

// care-server from this build, on 127.0.0.1 ephemeral ports.
class ServerProcess {
 public:
  struct Options {
    int lease_seconds = 60;
    int reaper_interval_ms = 200;
    int max_wait_ms = 30000;
    int poll_interval_ms = 50;
    // Besides <dir>/models, <dir>/data (e.g. the fixtures).
    std::vector<std::string> extra_model_roots;
    std::vector<std::string> extra_data_roots;
    // Binds this port instead of an ephemeral one (a restart on the same
    // address); 0 = ephemeral.
    int port = 0;
  };
  // `dir` holds jobs.db, the token files and the models/data/outputs roots.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& dir, const Options& options);

  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  const std::string& client_token_file() const { return client_token_file_; }
  const std::string& worker_token_file() const { return worker_token_file_; }
  std::string client_token() const { return "client-secret-7f3a"; }
  std::string worker_token() const { return "worker-secret-91c2"; }
  const std::string& dir() const { return dir_; }
  Process& process() { return *process_; }

 private:
  std::string dir_, address_, metrics_address_;
  std::string client_token_file_, worker_token_file_;
  std::unique_ptr<Process> process_;
};

}  // namespace care::testing

#endif  // CARE_TESTS_CLIENT_PROCESS_H_
