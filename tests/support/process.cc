#include "support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace care::testing {

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::unique_ptr<Process>> Process::Start(
    const std::vector<std::string>& argv, const std::string& log_dir,
    const std::map<std::string, std::string>& extra_env) {
  static int counter = 0;
  std::unique_ptr<Process> p(new Process());
  const std::string base = absl::StrCat(
      log_dir, "/", std::filesystem::path(argv[0]).filename().string(), "-",
      getpid(), "-", ++counter);
  p->stdout_path_ = base + ".out";
  p->stderr_path_ = base + ".err";

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    if (extra_env.count(key) == 0) env_strings.push_back(entry);
  }
  for (const auto& [key, value] : extra_env) {
    if (!value.empty()) env_strings.push_back(key + "=" + value);
  }
  std::vector<char*> c_argv, c_env;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  for (auto& e : env_strings) c_env.push_back(e.data());
  c_env.push_back(nullptr);
  // fork + exec rather than posix_spawn: the child must die with the test
  // (PR_SET_PDEATHSIG) even when the test binary is killed by a timeout, or
  // servers and workers would outlive it holding ports.
  const pid_t parent = getpid();
  const std::string out_path = p->stdout_path_, err_path = p->stderr_path_;
  pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(
        absl::StrCat("fork for ", argv[0], ": ", strerror(errno)));
  }
  if (pid == 0) {  // Only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(127);
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execve(c_argv[0], c_argv.data(), c_env.data());
    _exit(127);
  }
  p->pid_ = pid;
  return p;
}

Process::~Process() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

absl::StatusOr<int> Process::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!reaped_) {
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      reaped_ = true;
      exit_code_ =
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, " still running after ",
                       absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_code_;
}

bool Process::Running() { return !reaped_ && !Wait(absl::ZeroDuration()).ok(); }

void Process::Signal(int signal_number) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal_number);
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& log_dir, absl::Duration timeout,
                         const std::map<std::string, std::string>& env) {
  CommandResult result;
  auto process = Process::Start(argv, log_dir, env);
  if (!process.ok()) {
    result.err = std::string(process.status().message());
    return result;
  }
  auto code = (*process)->Wait(timeout);
  if (!code.ok()) (*process)->Signal(SIGKILL);
  result.exit_code = code.ok() ? *code : -1;
  result.out = (*process)->Stdout();
  result.err = (*process)->Stderr();
  return result;
}

}  // namespace care::testing
