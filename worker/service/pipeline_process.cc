#include "service/pipeline_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace care::worker {

namespace {

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

std::string DescribeSignal(int signal_number) {
  return absl::StrCat("signal ", signal_number, " (", strsignal(signal_number),
                      ")");
}

absl::StatusOr<std::unique_ptr<PipelineProcess>> PipelineProcess::Spawn(
    const std::vector<std::string>& argv, const std::string& scratch) {
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pipe: ", std::strerror(errno)));
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(in_pipe[0]);
    close(in_pipe[1]);
    return absl::ResourceExhaustedError(
        absl::StrCat("pipe: ", std::strerror(err)));
  }
  // Everything the child needs, prepared before fork (only async-signal-safe
  // calls are allowed after it).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (scratch.empty() || std::strncmp(*e, "TMPDIR=", 7) != 0) {
      env_strings.push_back(*e);
    }
  }
  if (!scratch.empty()) env_strings.push_back("TMPDIR=" + scratch);
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // The parent already died.
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    if (!scratch.empty() && chdir(scratch.c_str()) != 0) _exit(127);
    // The service blocks SIGTERM for sigwait; the pipeline must receive it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  std::unique_ptr<PipelineProcess> p(new PipelineProcess());
  p->pid_ = pid;
  p->in_ = in_pipe[1];
  p->out_ = out_pipe[0];
  return p;
}

PipelineProcess::~PipelineProcess() {
  CloseFd(in_);
  CloseFd(out_);
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

absl::Status PipelineProcess::WriteLine(const std::string& line) {
  const std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    if (in_ < 0) return absl::InternalError("the pipeline's stdin is closed");
    // MSG_NOSIGNAL does not apply to pipes; SIGPIPE is ignored by the
    // service (serve.cc), so a dead child is EPIPE here.
    ssize_t n = write(in_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(absl::StrCat(
          "writing to the pipeline process: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

std::optional<std::vector<std::string>> PipelineProcess::ReadLines(
    absl::Duration timeout) {
  std::vector<std::string> lines;
  if (!eof_) {
    pollfd p{out_, POLLIN, 0};
    const int ready =
        poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    if (ready > 0) {
      char chunk[4096];
      ssize_t n;
      do {
        n = read(out_, chunk, sizeof(chunk));
      } while (n < 0 && errno == EINTR);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
      } else {
        eof_ = true;  // EOF, or an error that ends the stream all the same.
      }
    } else if (ready < 0 && errno != EINTR) {
      eof_ = true;
    }
  }
  size_t newline;
  while ((newline = buffer_.find('\n')) != std::string::npos) {
    lines.push_back(buffer_.substr(0, newline));
    buffer_.erase(0, newline + 1);
  }
  if (eof_ && lines.empty()) return std::nullopt;
  return lines;
}

void PipelineProcess::Signal(int signal_number) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal_number);
}

ProcessEnd PipelineProcess::Wait() {
  ProcessEnd end;
  int status = 0;
  rusage usage{};
  while (wait4(pid_, &status, 0, &usage) < 0) {
    if (errno != EINTR) return end;
  }
  reaped_ = true;
  end.peak_rss_kb = usage.ru_maxrss;
  if (WIFSIGNALED(status)) {
    end.signalled = true;
    end.signal = WTERMSIG(status);
  } else {
    end.exit_code = WEXITSTATUS(status);
  }
  return end;
}

}  // namespace care::worker
