// Issue 23 end to end: care-server, `care-worker serve`, carectl, real
// fixtures, as an operator's worst day would have them: multi-line token
// files, a frozen server while a worker converts, a pipeline killed by the
// kernel, a server restart, leftovers of crashed attempts, errors that must
// name the field, and a loopback check that compares addresses, not text.
// Every wait is bounded in time.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/stat.h>
#include <utime.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

namespace fs = std::filesystem;

// The pipeline child (`care-worker serve --run-job`) of a worker service.
pid_t PipelineChildOf(pid_t service) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = ReadFileOrEmpty(entry.path() / "stat");
    // pid (comm) state ppid ...
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 2, "%*c %d", &ppid) != 1) continue;
    if (ppid != service) continue;
    std::string cmdline = ReadFileOrEmpty(entry.path() / "cmdline");
    if (absl::StrContains(cmdline, std::string("--run-job"))) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return -1;
}

// Names in `dir` starting with `prefix`.
std::vector<std::string> Entries(const std::string& dir,
                                 const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code error;
  for (const auto& e : fs::directory_iterator(dir, error)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, prefix)) out.push_back(name);
  }
  return out;
}

bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

class HardeningTest : public ClusterTest {
 protected:
  std::vector<std::string> Serve() {
    return {BinaryPath("worker/cli/care-worker"), "serve", "--work-dir",
            dir_ + "/work"};
  }
  // Calibration of `samples` x 32 tokens. 5000: seconds of work, long
  // enough to act on a running pipeline (resume_e2e_test.cc uses the same);
  // tests that only need a job to run use fewer.
  std::vector<std::string> Flags(const std::string& out, int samples = 500) {
    return {"--model",         model_,
            "--out",           out,
            "--kv-save",       "0.5",
            "--calib",         tokens_,
            "--calib-samples", std::to_string(samples),
            "--calib-seq-len", "32",
            "--eval",          tokens_,
            "--eval-seq-len",  "128",
            "--eval-windows",  "8"};
  }
  std::string Submit(const std::vector<std::string>& flags) {
    std::vector<std::string> args = flags;
    args.insert(args.begin(), {"submit", "--quiet"});
    CommandResult r = Carectl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }
  CommandResult CarectlWith(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinaryPath("client/carectl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--server=" + server_->address());
    return RunCommand(argv, logs_, absl::Seconds(30));
  }
  bool Running(const care::v1::Job& j) {
    return j.state() == care::v1::JOB_STATE_RUNNING &&
           j.progress().stage() >= care::v1::STAGE_CALIBRATING;
  }
};

// 1. Token files are read like the server's; nothing prints the token.
TEST_F(HardeningTest, TokenFilesAreReadLikeTheServersAndNeverEchoed) {
  const std::string token = server_->client_token();
  const std::string commented = dir_ + "/commented.token";
  std::ofstream(commented) << "# the client token\n\n" << token << "\n";
  CommandResult ok = CarectlWith({"list", "--token-file", commented});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;

  const std::string two = dir_ + "/two.token";
  std::ofstream(two) << token << "\n" << token << "-other\n";
  CommandResult r = CarectlWith({"list", "--token-file", two});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // carectl's usage error.
  EXPECT_TRUE(absl::StrContains(r.err, "holds 2 tokens")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err + r.out, token));

  const std::string secret = "abcdefgh\nijklmnopqrstu";
  r = CarectlWith({"list", "--token", secret});
  EXPECT_EQ(r.exit_code, 3) << r.err;  // Not 134: gRPC never sees it.
  EXPECT_TRUE(absl::StrContains(r.err, "control character")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "ijklmnop")) << r.err;

  const std::string huge = dir_ + "/huge.token";
  std::ofstream(huge) << std::string(16384, 'x') << "\n";
  r = CarectlWith({"list", "--token-file", huge});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "at most 4096")) << r.err;

  // The worker: a commented file serves (and is known to the server); a
  // file with two tokens is a usage error that never prints "serving".
  const std::string worker_commented = dir_ + "/worker-commented.token";
  std::ofstream(worker_commented) << "# worker\n"
                                  << server_->worker_token() << "\n\n";
  auto served =
      Process::Start({BinaryPath("worker/cli/care-worker"), "serve", "--server",
                      server_->address(), "--token-file", worker_commented,
                      "--worker-id", "commented", "--lease-wait-ms", "300"},
                     logs_);
  ASSERT_TRUE(served.ok());
  EXPECT_TRUE(WaitUntil(
      [&] { return absl::StrContains(Carectl({"workers"}).out, "commented"); },
      absl::Seconds(15)))
      << (*served)->Stderr();
  EXPECT_TRUE((*served)->Running());
  const std::string worker_two = dir_ + "/worker-two.token";
  std::ofstream(worker_two)
      << "# a\n"
      << server_->worker_token() << "\nx" << server_->worker_token() << "\n";
  CommandResult bad =
      RunCommand({BinaryPath("worker/cli/care-worker"), "serve", "--server",
                  server_->address(), "--token-file", worker_two},
                 logs_, absl::Seconds(30));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_FALSE(absl::StrContains(bad.out, "serving"));
  EXPECT_FALSE(absl::StrContains(bad.err, server_->worker_token())) << bad.err;
}

// 2. A worker that cannot renew stops, and its output is never published;
// the next attempt publishes it once.
TEST_F(HardeningTest, WorkerCutOffFromTheServerNeverPublishesItsOutput) {
  WorkerProcess& worker = StartWorker("w1", Serve());
  const std::string out = dir_ + "/outputs/fenced";
  const std::string id = Submit(Flags(out, 5000));
  WaitFor(
      id, [&](const care::v1::Job& j) { return Running(j); },
      absl::Seconds(60));

  // The server freezes (no answers, connections kept): the worker's lease
  // (2 s) cannot be renewed.
  server_->process().Signal(SIGSTOP);
  const bool stopped = WaitUntil(
      [&] {
        return absl::StrContains(worker.process->Stderr(),
                                 "could not renew the lease");
      },
      absl::Seconds(20));
  // Whatever stage the pipeline was in, nothing was published: a commit
  // needs the server's confirmation.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const bool published = fs::exists(out);
  server_->process().Signal(SIGCONT);
  EXPECT_TRUE(stopped) << worker.process->Stderr();
  EXPECT_FALSE(published);

  // The reaper re-queues the job; attempt 2 (the same worker, the only
  // one) converts and publishes.
  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_GE(job.attempt(), 2);
  EXPECT_TRUE(fs::exists(out + "/care_report.json"));
  EXPECT_TRUE(Entries(dir_ + "/outputs", ".fenced.tmp-").empty());
}

// 3. A pipeline killed by a signal is retried, with signal and peak RSS.
TEST_F(HardeningTest, PipelineKilledBySignalIsRetriedWithSignalAndPeakRss) {
  WorkerProcess& worker = StartWorker("w1", Serve());
  const std::string out = dir_ + "/outputs/oom";
  const std::string id = Submit(Flags(out, 5000));
  WaitFor(
      id, [&](const care::v1::Job& j) { return Running(j); },
      absl::Seconds(60));
  const pid_t child = PipelineChildOf(worker.process->pid());
  ASSERT_GT(child, 0);
  ASSERT_EQ(kill(child, SIGKILL), 0);  // As the OOM killer would.

  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_EQ(job.attempt(), 2);
  CommandResult events = Carectl({"events", id, "--output", "json"});
  EXPECT_TRUE(absl::StrContains(events.out, "killed by signal 9"))
      << events.out;
  EXPECT_TRUE(absl::StrContains(events.out, "peak RSS")) << events.out;
}

// 4. A 1 s server outage (kill -9, restart on the same port) costs the
// running job nothing: heartbeats reconnect, the lease is kept.
TEST_F(HardeningTest, ServerRestartDuringAJobKeepsTheAttempt) {
  server_.reset();
  StartServer(0, /*lease_seconds=*/8);
  const int port =
      std::stoi(server_->address().substr(server_->address().rfind(':') + 1));
  WorkerProcess& worker = StartWorker("w1", Serve());
  const std::string out = dir_ + "/outputs/restart";
  const std::string id = Submit(Flags(out, 5000));
  WaitFor(
      id, [&](const care::v1::Job& j) { return Running(j); },
      absl::Seconds(60));
  server_->process().Signal(SIGKILL);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(5)).ok());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  StartServer(port, /*lease_seconds=*/8);

  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message() << worker.process->Stderr();
  EXPECT_EQ(job.attempt(), 1) << worker.process->Stderr();
  EXPECT_FALSE(absl::StrContains(Carectl({"events", id}).out, "expired"));
}

// 6 and 9. Leftovers of crashed attempts go; outputs get the umask's mode.
TEST_F(HardeningTest, LeftoversAreRemovedAndOutputsAreReadableByOthers) {
  const std::string out = dir_ + "/outputs/tidy";
  const std::string id = Submit(Flags(out));
  // As attempt 1 of this job would leave them if killed while writing, and
  // as a crashed worker leaves its scratch (no live owner, a minute old).
  const std::string partial = dir_ + "/outputs/.tidy.tmp-" + id + "-a1-AbCdEf";
  fs::create_directories(partial);
  std::ofstream(partial + "/model.safetensors") << "partial";
  const std::string abandoned = dir_ + "/work/job-crashed/attempt-2";
  fs::create_directories(abandoned);
  const std::string empty_scratch = dir_ + "/work/job-crashed/attempt-1";
  fs::create_directories(empty_scratch);
  utimbuf old{0, 0};
  utime(abandoned.c_str(), &old);
  utime(empty_scratch.c_str(), &old);

  StartWorker("w1", Serve());
  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_TRUE(Entries(dir_ + "/outputs", ".tidy.tmp-").empty());
  EXPECT_FALSE(fs::exists(dir_ + "/work/job-crashed"));
  EXPECT_TRUE(Entries(dir_ + "/work", "job-").empty());

  const mode_t mask = umask(0);
  umask(mask);
  struct stat st {};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0777 & ~mask);
}

// 7. Errors that name the field.
TEST_F(HardeningTest, ErrorsNameTheFieldAndStayValidUtf8) {
  StartWorker("w1", Serve());
  // A missing output parent fails at load, not after the compute.
  const std::string id = Submit(Flags(dir_ + "/outputs/missing/parent/out"));
  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(60));
  EXPECT_EQ(job.state(), care::v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.failure().reason(), care::v1::FAILURE_REASON_USER_INPUT);
  EXPECT_TRUE(absl::StrContains(job.failure().message(), "does not exist"))
      << job.failure().message();
  EXPECT_TRUE(absl::StartsWith(job.failure().message(), "load"))
      << job.failure().message();

  // Invalid UTF-8 never leaves carectl.
  std::vector<std::string> flags = Flags(dir_ + "/outputs/utf8");
  flags.insert(flags.end(), {"--label", std::string("team=n\xC3", 7)});
  flags.insert(flags.begin(), "submit");
  CommandResult r = Carectl(flags);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "not valid UTF-8")) << r.err;

  // An hf:// name with a multi-byte character is echoed whole.
  r = Carectl({"submit", "--model", "hf://org/n\xC3\xA4m\xC3\xA9", "--out",
               dir_ + "/outputs/hub", "--kv-save", "0.5", "--calib", tokens_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "invalid character '\xC3\xA4'"))
      << r.err;

  // A garbage CA file and a key that does not match the certificate.
  const std::string garbage = dir_ + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  r = Carectl({"list", "--tls-ca", garbage});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "holds no PEM certificate")) << r.err;
  CommandResult w =
      RunCommand({BinaryPath("worker/cli/care-worker"), "serve", "--server",
                  server_->address(), "--token-file",
                  server_->worker_token_file(), "--tls-ca", garbage},
                 logs_, absl::Seconds(30));
  EXPECT_NE(w.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(w.err, "holds no PEM certificate")) << w.err;

  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  const std::string other_key = dir_ + "/other.key";
  {
    BIO* bio = BIO_new_file(other_key.c_str(), "w");
    ASSERT_NE(bio, nullptr);
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    BIO_free(bio);
    EVP_PKEY_free(key);
  }
  CommandResult tls = RunCommand(
      {BinaryPath("server/care-server"), "--listen=127.0.0.1:0",
       "--metrics-listen=127.0.0.1:0", "--db=" + dir_ + "/tls.db",
       "--client-token-file=" + server_->client_token_file(),
       "--worker-token-file=" + server_->worker_token_file(),
       "--tls-cert=" + std::string(CARE_SERVER_TESTDATA) + "/tls.crt",
       "--tls-key=" + other_key},
      logs_, absl::Seconds(30));
  EXPECT_EQ(tls.exit_code, 1) << tls.err;
  EXPECT_TRUE(absl::StrContains(tls.err, "does not belong to the certificate"))
      << tls.err;

  // I32 weights are refused at load (offline, same pipeline).
  const std::string copy = dir_ + "/models/int-model";
  fs::copy(model_, copy, fs::copy_options::recursive);
  const std::string st = copy + "/model.safetensors";
  std::string bytes = ReadFileOrEmpty(st);
  const size_t at = bytes.find("\"dtype\":\"F32\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 13, "\"dtype\":\"I32\"");  // Same length: same header.
  std::ofstream(st, std::ios::binary | std::ios::trunc) << bytes;
  ShellResult conv = RunCareWorker(absl::StrCat(
      "convert --model ", copy, " --out ", dir_, "/outputs/int --kv-save 0.5",
      " --calib ", tokens_, " --calib-samples 8 --quiet"));
  EXPECT_NE(conv.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(conv.output, "has dtype I32")) << conv.output;
}

// 8. --insecure-no-auth accepts loopback addresses, not names like them.
TEST_F(HardeningTest, InsecureNoAuthRefusesANameThatLooksLikeLoopback) {
  CommandResult r = RunCommand(
      {BinaryPath("server/care-server"), "--insecure-no-auth",
       "--listen=127.attacker.example:0", "--metrics-listen=127.0.0.1:0",
       "--db=" + dir_ + "/insecure.db"},
      logs_, absl::Seconds(30));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "loopback")) << r.err;
}

}  // namespace
}  // namespace care::testing
