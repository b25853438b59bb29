// The pipeline's child process, as the worker service sees it: spawned with
// pipes on stdin/stdout, in a scratch directory, dying with its parent; its
// stdout read as lines; its end (exit status, signal, peak RSS) collected.
// The JSON meaning of the lines is pipeline_protocol.h's concern.
#ifndef CARE_WORKER_SERVICE_PIPELINE_PROCESS_H_
#define CARE_WORKER_SERVICE_PIPELINE_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace care::worker {

// How the child ended.
struct ProcessEnd {
  bool signalled = false;
  int exit_code = 0;        // When !signalled.
  int signal = 0;           // When signalled.
  int64_t peak_rss_kb = 0;  // ru_maxrss of the child.
};

class PipelineProcess {
 public:
  // Runs `argv` (argv[0] is the executable path) with stdin and stdout on
  // pipes, stderr inherited, cwd and TMPDIR `scratch` (when not empty), an
  // empty signal mask, and PR_SET_PDEATHSIG(SIGKILL).
  static absl::StatusOr<std::unique_ptr<PipelineProcess>> Spawn(
      const std::vector<std::string>& argv, const std::string& scratch);
  // Kills (SIGKILL) and reaps a child still running.
  ~PipelineProcess();
  PipelineProcess(const PipelineProcess&) = delete;
  PipelineProcess& operator=(const PipelineProcess&) = delete;

  // Writes `line` and a newline to the child's stdin.
  absl::Status WriteLine(const std::string& line);
  // Complete lines read within `timeout` (without their '\n'); nullopt at
  // EOF (the child closed stdout, normally by exiting) once every complete
  // line was returned.
  std::optional<std::vector<std::string>> ReadLines(absl::Duration timeout);
  void Signal(int signal_number);
  // Waits for the child to exit.
  ProcessEnd Wait();
  pid_t pid() const { return pid_; }

 private:
  PipelineProcess() = default;
  pid_t pid_ = -1;
  int in_ = -1;   // Child's stdin (our write end).
  int out_ = -1;  // Child's stdout (our read end).
  bool reaped_ = false;
  bool eof_ = false;
  std::string buffer_;
};

// "signal 9 (Killed)".
std::string DescribeSignal(int signal_number);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_PIPELINE_PROCESS_H_
