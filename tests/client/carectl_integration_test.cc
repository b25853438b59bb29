// The real carectl binary against the real care-server on loopback: every
// subcommand, exit codes, and the error messages for an unreachable server
// and a rejected token. The test plays the worker through WorkerService
// (the protocol, with its own token) to move jobs to each terminal state.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "care/v1/conversion_service.pb.h"
#include "care/v1/worker_service.grpc.pb.h"
#include "client/process.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CarectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("carectl-it");
    ASSERT_FALSE(dir_.empty());
    ServerProcess::Options options;
    auto server = ServerProcess::Start(dir_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    std::filesystem::create_directories(dir_ + "/models/m");
    std::ofstream(dir_ + "/data/c.txt") << "calibration text\n";
    logs_ = dir_ + "/logs";
  }

  void TearDown() override {
    server_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::vector<std::string> Argv(const std::vector<std::string>& args,
                                bool auth = true) {
    std::vector<std::string> argv = {BinaryPath("client/carectl")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--server=" + server_->address());
    if (auth) argv.push_back("--token-file=" + server_->client_token_file());
    return argv;
  }

  CommandResult Carectl(const std::vector<std::string>& args,
                        bool auth = true) {
    return RunCommand(Argv(args, auth), logs_, absl::Seconds(30),
                      {{"CARE_SERVER", ""}, {"CARE_TOKEN", ""}});
  }

  // Submits a valid job and returns its id.
  std::string Submit(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        "submit",    "--quiet",
        "--model",   dir_ + "/models/m",
        "--out",     absl::StrCat(dir_, "/outputs/o", ++outputs_),
        "--kv-save", "0.5",
        "--calib",   dir_ + "/data/c.txt"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Carectl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(id.rfind("job-", 0), 0u) << r.out;
    return id;
  }

  care::v1::Job GetJson(const std::string& id) {
    CommandResult r = Carectl({"get", id, "--output", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    care::v1::Job job;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &job).ok())
        << r.out;
    return job;
  }

  std::unique_ptr<care::v1::WorkerService::Stub> WorkerStub() {
    return care::v1::WorkerService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<grpc::ClientContext> WorkerContext() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + server_->worker_token());
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(20));
    return context;
  }

  // Leases the next job as worker "it-worker"; expects `id`.
  int Lease(care::v1::WorkerService::Stub& stub, const std::string& id) {
    care::v1::LeaseJobRequest request;
    request.set_worker_id("it-worker");
    request.set_device(care::v1::DEVICE_CPU);
    request.set_wait_ms(5000);
    care::v1::LeaseJobResponse response;
    grpc::Status status =
        stub.LeaseJob(WorkerContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.job().id(), id);
    return response.attempt();
  }

  bool Heartbeat(care::v1::WorkerService::Stub& stub, const std::string& id,
                 int attempt, care::v1::Stage stage, int layer, int layers,
                 double fraction) {
    care::v1::HeartbeatRequest request;
    request.set_worker_id("it-worker");
    request.set_job_id(id);
    request.set_attempt(attempt);
    request.mutable_progress()->set_stage(stage);
    request.mutable_progress()->set_layer(layer);
    request.mutable_progress()->set_layer_count(layers);
    request.mutable_progress()->set_fraction(fraction);
    care::v1::HeartbeatResponse response;
    grpc::Status status =
        stub.Heartbeat(WorkerContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.cancel_requested();
  }

  std::string dir_, logs_;
  int outputs_ = 0;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CarectlTest, HealthReportsServing) {
  CommandResult r = Carectl({"health"}, /*auth=*/false);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
}

TEST_F(CarectlTest, SubmitGetListEvents) {
  std::string a = Submit({"--label", "team=alpha", "--priority", "3"});
  std::string b = Submit({"--label", "team=alpha"});
  std::string c = Submit({"--label", "team=beta"});

  care::v1::Job job = GetJson(a);
  EXPECT_EQ(job.id(), a);
  EXPECT_EQ(job.state(), care::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.spec().model_uri(), dir_ + "/models/m");
  EXPECT_EQ(job.spec().priority(), 3);
  EXPECT_EQ(job.spec().labels().at("team"), "alpha");
  // The server stores the defaulted spec.
  EXPECT_EQ(job.spec().calibration().samples(), 256);

  CommandResult table = Carectl({"get", a});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.out, HasSubstr("state:        QUEUED\n"));
  EXPECT_THAT(table.out, HasSubstr("labels:       team=alpha\n"));

  // Label filter, page by page through --all with one job per page.
  CommandResult list =
      Carectl({"list", "--label", "team=alpha", "--page-size", "1", "--all"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> lines =
      absl::StrSplit(list.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << list.out;  // Header + two jobs.
  EXPECT_EQ(lines[0].rfind("ID", 0), 0u);
  EXPECT_THAT(list.out, HasSubstr(a));
  EXPECT_THAT(list.out, HasSubstr(b));
  EXPECT_THAT(list.out, Not(HasSubstr(c)));

  // One page only: the rest is announced on stderr.
  CommandResult page = Carectl({"list", "--page-size", "1"});
  EXPECT_EQ(page.exit_code, 0);
  EXPECT_THAT(page.err, HasSubstr("--page-token"));

  CommandResult json =
      Carectl({"list", "--state", "queued,running", "--output", "json"});
  care::v1::ListJobsResponse response;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(json.out, &response).ok())
      << json.out;
  EXPECT_EQ(response.jobs_size(), 3);
  CommandResult none = Carectl({"list", "--state", "succeeded"});
  EXPECT_EQ(std::count(none.out.begin(), none.out.end(), '\n'), 1);

  CommandResult events = Carectl({"events", a});
  EXPECT_EQ(events.exit_code, 0) << events.err;
  EXPECT_THAT(events.out, HasSubstr("QUEUED"));
  EXPECT_EQ(events.out.rfind("SEQ", 0), 0u);
}

TEST_F(CarectlTest, RequestIdMakesSubmitIdempotent) {
  std::vector<std::string> args = {"submit",       "--quiet",
                                   "--model",      dir_ + "/models/m",
                                   "--out",        dir_ + "/outputs/same",
                                   "--kv-save",    "0.5",
                                   "--calib",      dir_ + "/data/c.txt",
                                   "--request-id", "retry-1"};
  CommandResult first = Carectl(args);
  CommandResult second = Carectl(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(first.out, second.out);
  args[7] = "0.25";  // Same request id, other spec.
  CommandResult conflict = Carectl(args);
  EXPECT_EQ(conflict.exit_code, 1) << conflict.err;
  EXPECT_THAT(conflict.err, HasSubstr("ALREADY_EXISTS"));
}

TEST_F(CarectlTest, CancelQueuedJobAndWatchExitsTwo) {
  std::string id = Submit();
  CommandResult cancel = Carectl({"cancel", id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, id + " CANCELLED\n");
  CommandResult watch = Carectl({"watch", id});
  EXPECT_EQ(watch.exit_code, 2) << watch.err;
  EXPECT_THAT(watch.out, HasSubstr(id + " CANCELLED"));
}

TEST_F(CarectlTest, WatchFollowsARunningJobToSuccess) {
  std::string id = Submit({"--priority", "1000"});
  auto watch = Process::Start(Argv({"watch", id}), logs_);
  ASSERT_TRUE(watch.ok());
  auto stub = WorkerStub();
  int attempt = Lease(*stub, id);
  EXPECT_EQ(attempt, 1);
  EXPECT_FALSE(
      Heartbeat(*stub, id, attempt, care::v1::STAGE_CALIBRATING, 0, 2, 0.25));
  EXPECT_FALSE(
      Heartbeat(*stub, id, attempt, care::v1::STAGE_DECOMPOSING, 1, 2, 0.75));
  care::v1::CompleteJobRequest complete;
  complete.set_worker_id("it-worker");
  complete.set_job_id(id);
  complete.set_attempt(attempt);
  complete.mutable_report()->set_kv_width_before(64);
  complete.mutable_report()->set_kv_width_after(32);
  complete.mutable_report()->set_output_uri(dir_ + "/outputs/o1");
  care::v1::CompleteJobResponse done;
  grpc::Status status =
      stub->CompleteJob(WorkerContext().get(), complete, &done);
  ASSERT_TRUE(status.ok()) << status.error_message();

  auto code = (*watch)->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << (*watch)->Stderr();
  const std::string out = (*watch)->Stdout();
  // Not a terminal: plain lines, no carriage returns.
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_THAT(out, HasSubstr("RUNNING"));
  EXPECT_THAT(out, HasSubstr("decomposing layer 2/2 75.0%"));
  EXPECT_THAT(out, HasSubstr(id + " SUCCEEDED"));
  EXPECT_THAT(out, HasSubstr("KV width 64 -> 32"));

  // A late write from the finished attempt is fenced off.
  care::v1::FailJobRequest late;
  late.set_worker_id("it-worker");
  late.set_job_id(id);
  late.set_attempt(attempt);
  late.mutable_failure()->set_reason(care::v1::FAILURE_REASON_INTERNAL);
  care::v1::FailJobResponse late_response;
  EXPECT_EQ(
      stub->FailJob(WorkerContext().get(), late, &late_response).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CarectlTest, SubmitWaitMirrorsFailureAndJsonLines) {
  auto submit =
      Process::Start(Argv({"submit", "--model", dir_ + "/models/m", "--out",
                           dir_ + "/outputs/f", "--kv-save", "0.5", "--calib",
                           dir_ + "/data/c.txt", "--wait", "--output", "json"}),
                     logs_);
  ASSERT_TRUE(submit.ok());
  auto stub = WorkerStub();
  // The job id comes from the lease: the only queued job is ours.
  care::v1::LeaseJobRequest request;
  request.set_worker_id("it-worker");
  request.set_wait_ms(10000);
  care::v1::LeaseJobResponse leased;
  ASSERT_TRUE(stub->LeaseJob(WorkerContext().get(), request, &leased).ok());
  ASSERT_FALSE(leased.job().id().empty());
  care::v1::FailJobRequest fail;
  fail.set_worker_id("it-worker");
  fail.set_job_id(leased.job().id());
  fail.set_attempt(leased.attempt());
  fail.mutable_failure()->set_reason(care::v1::FAILURE_REASON_USER_INPUT);
  fail.mutable_failure()->set_message("model.safetensors: header truncated");
  care::v1::FailJobResponse failed;
  ASSERT_TRUE(stub->FailJob(WorkerContext().get(), fail, &failed).ok());

  auto code = (*submit)->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 1) << (*submit)->Stderr();
  // Every line is JSON: the job first, then its events.
  std::vector<std::string> lines =
      absl::StrSplit((*submit)->Stdout(), '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 3u);
  care::v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &job).ok());
  EXPECT_EQ(job.id(), leased.job().id());
  care::v1::JobEvent last;
  for (size_t i = 1; i < lines.size(); ++i) {
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(lines[i], &last).ok())
        << lines[i];
  }
  EXPECT_EQ(last.state(), care::v1::JOB_STATE_FAILED);
  CommandResult get = Carectl({"get", job.id()});
  EXPECT_THAT(get.out,
              HasSubstr("failure:      user input: model.safetensors: header "
                        "truncated"));
}

TEST_F(CarectlTest, CancelRunningJobReachesWorkerAndWatchExitsTwo) {
  std::string id = Submit();
  auto stub = WorkerStub();
  int attempt = Lease(*stub, id);
  CommandResult cancel = Carectl({"cancel", id});
  EXPECT_EQ(cancel.out, id + " CANCELLING\n") << cancel.err;
  auto watch = Process::Start(Argv({"watch", id}), logs_);
  ASSERT_TRUE(watch.ok());
  EXPECT_TRUE(
      Heartbeat(*stub, id, attempt, care::v1::STAGE_CALIBRATING, 0, 2, 0.1));
  care::v1::CompleteJobRequest complete;
  complete.set_worker_id("it-worker");
  complete.set_job_id(id);
  complete.set_attempt(attempt);
  complete.set_cancelled(true);
  care::v1::CompleteJobResponse done;
  ASSERT_TRUE(stub->CompleteJob(WorkerContext().get(), complete, &done).ok());
  auto code = (*watch)->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2) << (*watch)->Stderr();
}

TEST_F(CarectlTest, WatchSurvivesAServerRestart) {
  std::string id = Submit();
  auto watch = Process::Start(Argv({"watch", id}), logs_);
  ASSERT_TRUE(watch.ok());
  const std::string address = server_->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  server_->process().Signal(SIGKILL);
  ASSERT_TRUE(server_->process().Wait(absl::Seconds(5)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE((*watch)->Running());  // Retrying, not failed.
  // Same address, same database: the job is still there.
  ServerProcess::Options options;
  options.port = port;
  auto restarted = ServerProcess::Start(dir_, options);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  server_ = std::move(*restarted);
  EXPECT_EQ(Carectl({"cancel", id}).exit_code, 0);
  auto code = (*watch)->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2) << (*watch)->Stderr();
  EXPECT_THAT((*watch)->Stdout(), HasSubstr(id + " CANCELLED"));
}

TEST_F(CarectlTest, UnreachableServerNamesTheAddress) {
  // A port that was free a moment ago: nothing listens there.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  close(fd);
  CommandResult r = RunCommand(
      {BinaryPath("client/carectl"), "get", "job-x", "--timeout", "5"}, logs_,
      absl::Seconds(30), {{"CARE_SERVER", address}, {"CARE_TOKEN", "t"}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err, HasSubstr("cannot reach care-server at " + address +
                               " ($CARE_SERVER"));
  CommandResult watch = RunCommand(
      {BinaryPath("client/carectl"), "health", "--server", address}, logs_);
  EXPECT_EQ(watch.exit_code, 3);
}

TEST_F(CarectlTest, RejectedTokenNamesItsSourceButNotItsValue) {
  const std::string wrong = dir_ + "/wrong.token";
  std::ofstream(wrong) << "not-the-secret-5521\n";
  std::vector<std::string> argv = {
      BinaryPath("client/carectl"), "list",         "--server",
      server_->address(),           "--token-file", wrong};
  CommandResult r = RunCommand(argv, logs_);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.err,
              HasSubstr("rejected the token from --token-file " + wrong));
  EXPECT_THAT(r.err, Not(HasSubstr("not-the-secret-5521")));

  CommandResult env = RunCommand(
      {BinaryPath("client/carectl"), "list"}, logs_, absl::Seconds(30),
      {{"CARE_SERVER", server_->address()}, {"CARE_TOKEN", "nope-8812"}});
  EXPECT_EQ(env.exit_code, 3);
  EXPECT_THAT(env.err, HasSubstr("$CARE_TOKEN"));
  EXPECT_THAT(env.err, Not(HasSubstr("nope-8812")));

  CommandResult none = Carectl({"list"}, /*auth=*/false);
  EXPECT_EQ(none.exit_code, 3);
  EXPECT_THAT(none.err, HasSubstr("no token was given"));

  // The worker token is not a client token.
  CommandResult worker = RunCommand(
      {BinaryPath("client/carectl"), "list", "--server", server_->address(),
       "--token-file", server_->worker_token_file()},
      logs_);
  EXPECT_EQ(worker.exit_code, 3) << worker.err;

  // The right token through the environment works.
  CommandResult ok = RunCommand({BinaryPath("client/carectl"), "list"}, logs_,
                                absl::Seconds(30),
                                {{"CARE_SERVER", server_->address()},
                                 {"CARE_TOKEN", server_->client_token()}});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(CarectlTest, InvalidSpecsAndUnknownJobs) {
  CommandResult local = Carectl({"submit", "--model", dir_ + "/models/m",
                                 "--out", dir_ + "/outputs/x", "--kv-save",
                                 "1.5", "--calib", dir_ + "/data/c.txt"});
  EXPECT_EQ(local.exit_code, 3);
  EXPECT_THAT(local.err, HasSubstr("kv_budget.kv_save_fraction"));
  // Valid alone, but outside the server's model roots.
  CommandResult roots =
      Carectl({"submit", "--model", "/usr/share", "--out", dir_ + "/outputs/x",
               "--kv-save", "0.5", "--calib", dir_ + "/data/c.txt"});
  EXPECT_EQ(roots.exit_code, 3);
  EXPECT_THAT(roots.err, HasSubstr("model_uri"));
  CommandResult usage = Carectl({"list", "--page-size", "abc"});
  EXPECT_EQ(usage.exit_code, 3);
  EXPECT_THAT(usage.err, HasSubstr("--page-size"));
  CommandResult missing = Carectl({"get", "job-doesnotexist"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  CommandResult watch = Carectl({"watch", "job-doesnotexist"});
  EXPECT_EQ(watch.exit_code, 3);
}

}  // namespace
}  // namespace care::testing
