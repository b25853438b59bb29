// The one way tests run processes: a child with its output captured to
// files (fork + exec, dying with the test through PR_SET_PDEATHSIG), and a
// run-to-completion wrapper. tests/client/process.h adds care-server on
// loopback; fixtures.h's RunCareWorker runs care-worker through it.
#ifndef CARE_TESTS_SUPPORT_PROCESS_H_
#define CARE_TESTS_SUPPORT_PROCESS_H_

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

}  // namespace care::testing

#endif  // CARE_TESTS_SUPPORT_PROCESS_H_
