#include "service/subprocess_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/util/status_macros.h"
#include "service/job_options.h"

extern char** environ;

namespace care::worker {

namespace {

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("writing the job options to the pipeline process: ",
                       std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<care::v1::Report> SubprocessRunner::Run(
    const care::v1::Job& job, ProgressSink& progress,
    const CancelToken& cancel) {
  CARE_ASSIGN_OR_RETURN(nlohmann::json options,
                        PipelineOptionsFromJob(job, threads_));
  options["device"] = device_;  // This worker's, whatever the spec allowed.
  // Resume state shared by attempts and workers: <work_dir>/<fingerprint>/.
  // Absolute: the pipeline process runs in its scratch directory.
  if (!work_dir_.empty()) {
    std::error_code ignored;
    const std::filesystem::path root =
        std::filesystem::absolute(work_dir_, ignored);
    options["work_dir"] = root.empty() ? work_dir_ : root.string();
  }
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pipe: ", std::strerror(errno)));
  }
  Fd in_read(in_pipe[0]), in_write(in_pipe[1]);
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pipe: ", std::strerror(errno)));
  }
  Fd out_read(out_pipe[0]), out_write(out_pipe[1]);

  // Per-job scratch directory and the child's environment, prepared before
  // fork (only async-signal-safe calls are allowed after it).
  std::string scratch;
  if (!work_dir_.empty()) {
    scratch =
        absl::StrCat(work_dir_, "/", job.id(), "/attempt-", job.attempt());
    std::error_code error;
    std::filesystem::create_directories(scratch, error);
    if (error) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "--work-dir: cannot create ", scratch, ": ", error.message()));
    }
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (scratch.empty() || std::strncmp(*e, "TMPDIR=", 7) != 0) {
      env_strings.push_back(*e);
    }
  }
  if (!scratch.empty()) env_strings.push_back("TMPDIR=" + scratch);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // The parent already died.
    dup2(in_read.get(), STDIN_FILENO);
    dup2(out_write.get(), STDOUT_FILENO);
    if (!scratch.empty() && chdir(scratch.c_str()) != 0) _exit(127);
    // The service blocks SIGTERM for sigwait; the pipeline must receive it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const char* argv[] = {pipeline_exe_.c_str(), "serve", "--run-job", nullptr};
    execve(pipeline_exe_.c_str(), const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  in_read.Reset();
  out_write.Reset();
  absl::Status written = WriteAll(in_write.get(), options.dump());
  in_write.Reset();  // EOF: the child reads the whole document.

  std::string buffer;
  std::optional<absl::StatusOr<care::v1::Report>> outcome;
  bool signalled = false;
  int64_t resumed_logged = 0;
  while (true) {
    if (cancel.cancelled() && !signalled) {
      kill(pid, SIGTERM);  // Stops at the next layer boundary.
      signalled = true;
    }
    pollfd p{out_read.get(), POLLIN, 0};
    int ready = poll(&p, 1, 100);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char chunk[4096];
    ssize_t n = read(out_read.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child exited.
    buffer.append(chunk, static_cast<size_t>(n));
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      const std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
      if (message.is_discarded() || !message.is_object()) continue;
      if (auto it = message.find("progress");
          it != message.end() && it->is_object()) {
        care::v1::Progress update;
        update.set_stage(StageFromPipeline(it->value("stage", "")));
        update.set_fraction(std::clamp(it->value("overall", 0.0), 0.0, 1.0));
        const int64_t total = it->value("total", int64_t{0});
        if (total > 0) {
          // step counts finished layers; the one being worked on is next.
          update.set_layer(static_cast<int32_t>(
              std::min(it->value("step", int64_t{0}), total - 1)));
          update.set_layer_count(static_cast<int32_t>(total));
        }
        progress.Report(update);
        if (it->contains("flops")) {
          progress.StageCompute(update.stage(), it->value("flops", 0.0),
                                it->value("seconds", 0.0));
        }
        if (const int64_t resumed = it->value("resumed_layers", int64_t{0});
            resumed > resumed_logged) {
          resumed_logged = resumed;
          std::cerr << "care-worker: " << job.id() << " attempt "
                    << job.attempt() << ": resumed " << resumed
                    << " calibration layers from " << work_dir_ << "\n";
        }
      } else if (auto report = message.find("report");
                 report != message.end()) {
        outcome = ReportFromPipelineJson(*report, job.spec());
      } else if (auto error = message.find("error");
                 error != message.end() && error->is_object()) {
        int code =
            error->value("code", static_cast<int>(absl::StatusCode::kInternal));
        if (code <= 0 || code > 16)
          code = static_cast<int>(absl::StatusCode::kInternal);
        outcome = absl::Status(static_cast<absl::StatusCode>(code),
                               error->value("message", std::string("unknown")));
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!scratch.empty()) {
    std::error_code ignored;  // Best effort: scratch space only.
    std::filesystem::remove_all(scratch, ignored);
    std::filesystem::remove(std::filesystem::path(scratch).parent_path(),
                            ignored);  // Only when empty.
  }
  if (!written.ok() && !outcome) return written;
  if (outcome) {
    if (outcome->ok()) {
      // Per-layer results reach the job's events with the last heartbeat.
      for (const auto& layer : (*outcome)->layers()) progress.LayerDone(layer);
    }
    return *outcome;
  }
  if (WIFSIGNALED(status)) {
    return absl::InternalError(absl::StrCat(
        "the pipeline process (", pipeline_exe_, ") died of signal ",
        WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")"));
  }
  return absl::InternalError(absl::StrCat(
      "the pipeline process (", pipeline_exe_, ") exited with status ",
      WEXITSTATUS(status), " without a result",
      WEXITSTATUS(status) == 127 ? " (could not be started)" : ""));
}

}  // namespace care::worker
