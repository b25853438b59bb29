// Test helpers that run the project's real binaries: a child process with
// its output captured to files, and a care-server on ephemeral loopback
// ports with a temporary database, token files and roots.
#ifndef CARE_TESTS_CLIENT_PROCESS_H_
#define CARE_TESTS_CLIENT_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace care::testing {

std::string ReadFileOrEmpty(const std::string& path);

// A child process; stdout/stderr go to files under `log_dir`. Killed with
// SIGKILL on destruction if still running.
class Process {
 public:
  static absl::StatusOr<std::unique_ptr<Process>> Start(
      const std::vector<std::string>& argv, const std::string& log_dir,
      const std::map<std::string, std::string>& extra_env = {});
  ~Process();

  pid_t pid() const { return pid_; }
  // Exit code, or 128 + signal; error after `timeout` (the child keeps
  // running).
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();
  void Signal(int signal_number);
  std::string Stdout() const { return ReadFileOrEmpty(stdout_path_); }
  std::string Stderr() const { return ReadFileOrEmpty(stderr_path_); }

 private:
  Process() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string stdout_path_, stderr_path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs to completion (at most `timeout`, then SIGKILL and exit_code -1).
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& log_dir,
                         absl::Duration timeout = absl::Seconds(30),
                         const std::map<std::string, std::string>& env = {});

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
