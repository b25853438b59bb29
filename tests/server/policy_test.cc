// Unit tests of the server's policies: URI roots (symlink and prefix
// escapes), bearer-token auth, configuration parsing and log formatting.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/log.h"
#include "server/roots.h"
#include "server/server.h"
#include "support/fixtures.h"

namespace care::server {
namespace {

namespace fs = std::filesystem;

class ServerRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = care::testing::MakeTempDir("care-roots");
    for (const char* d :
         {"models/llama", "data", "out", "outside", "models2"}) {
      fs::create_directories(dir_ + "/" + d);
    }
    fs::create_directory_symlink(dir_ + "/outside", dir_ + "/models/escape");
    fs::create_directory_symlink(dir_ + "/models/llama",
                                 dir_ + "/models/alias");
    RootsConfig config;
    config.model_roots = {dir_ + "/models"};
    config.data_roots = {dir_ + "/data"};
    config.output_roots = {dir_ + "/out"};
    auto roots = UriRoots::Create(config);
    ASSERT_TRUE(roots.ok()) << roots.status();
    roots_ = std::make_unique<UriRoots>(*roots);
  }
  void TearDown() override { fs::remove_all(dir_); }

  v1::JobSpec Spec() {
    v1::JobSpec spec;
    spec.set_model_uri(dir_ + "/models/llama");
    spec.set_output_uri("file://" + dir_ + "/out/new/run1");
    spec.mutable_calibration()->set_dataset_uri(dir_ + "/data/c.txt");
    return spec;
  }
  std::string CheckField(const v1::JobSpec& spec) {
    absl::Status s = roots_->CheckSpec(spec);
    if (s.ok()) return "ok";
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message().substr(0, s.message().find(':')));
  }

  std::string dir_;
  std::unique_ptr<UriRoots> roots_;
};

TEST_F(ServerRootsTest, AcceptsPathsInsideRoots) {
  EXPECT_EQ(CheckField(Spec()), "ok");
  v1::JobSpec spec = Spec();
  spec.set_model_uri(dir_ + "/models/alias");  // Symlink within the root.
  spec.mutable_evaluation()->set_dataset_uri(dir_ + "/data/missing/e.txt");
  EXPECT_EQ(CheckField(spec), "ok");
  spec.set_model_uri("hf://org/model@main");
  EXPECT_EQ(CheckField(spec), "ok");
}

TEST_F(ServerRootsTest, RejectsEscapes) {
  v1::JobSpec spec = Spec();
  spec.set_model_uri(dir_ + "/models/escape/weights");  // Symlink out.
  EXPECT_EQ(CheckField(spec), "model_uri");
  spec = Spec();
  spec.set_model_uri(dir_ + "/models2/x");  // Prefix, not a parent.
  EXPECT_EQ(CheckField(spec), "model_uri");
  spec = Spec();
  spec.set_model_uri(dir_ + "/models/../outside");
  EXPECT_EQ(CheckField(spec), "model_uri");
  spec = Spec();
  spec.set_output_uri(dir_ + "/out");  // The root itself.
  EXPECT_EQ(CheckField(spec), "output_uri");
  spec = Spec();
  spec.set_output_uri(dir_ + "/data/x");
  EXPECT_EQ(CheckField(spec), "output_uri");
  spec = Spec();
  spec.mutable_calibration()->set_dataset_uri(dir_ + "/models/llama/t.txt");
  EXPECT_EQ(CheckField(spec), "calibration.dataset_uri");
  spec = Spec();
  spec.mutable_evaluation()->set_dataset_uri("/etc/passwd");
  EXPECT_EQ(CheckField(spec), "evaluation.dataset_uri");
  spec = Spec();
  spec.mutable_evaluation()->add_tasks()->set_uri(dir_ + "/data/arc.jsonl");
  EXPECT_EQ(CheckField(spec), "ok");
  spec.mutable_evaluation()->add_tasks()->set_uri("/etc/passwd");
  EXPECT_EQ(CheckField(spec), "evaluation.tasks[1].uri");
}

TEST_F(ServerRootsTest, NoRootsMeansNoLocalPathsAndHubCanBeDisabled) {
  RootsConfig config;
  config.allow_hub_models = false;
  auto none = UriRoots::Create(config);
  ASSERT_TRUE(none.ok());
  v1::JobSpec spec = Spec();
  EXPECT_EQ(none->CheckSpec(spec).code(), absl::StatusCode::kInvalidArgument);
  spec.set_model_uri("hf://org/model");
  absl::Status s = none->CheckSpec(spec);
  EXPECT_TRUE(absl::StartsWith(s.message(), "model_uri: hf://")) << s;
  config.model_roots = {dir_ + "/nonexistent"};
  EXPECT_EQ(UriRoots::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ServerAuthTest, ConstantTimeEqualsIsExact) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(ServerAuthTest, ChecksRoleAndToken) {
  const std::string dir = care::testing::MakeTempDir("care-auth");
  std::ofstream(dir + "/c") << "# clients\n\nclient-token-aaaaaaaa\n";
  std::ofstream(dir + "/w") << "worker-token-bbbbbbbb\n";
  std::ofstream(dir + "/short") << "tiny\n";
  auto auth = TokenAuth::Load(dir + "/c", dir + "/w");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->Check("Bearer client-token-aaaaaaaa", Role::kClient).ok());
  EXPECT_TRUE(auth->Check("Bearer worker-token-bbbbbbbb", Role::kWorker).ok());
  EXPECT_EQ(auth->Check(std::nullopt, Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Check("client-token-aaaaaaaa", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Check("Bearer nope-nope-nope-nope", Role::kClient).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Check("Bearer client-token-aaaaaaaa", Role::kWorker).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->Check("Bearer worker-token-bbbbbbbb", Role::kClient).code(),
            absl::StatusCode::kPermissionDenied);
  // Errors never echo the token.
  absl::Status s = auth->Check("Bearer secret-secret-secret", Role::kClient);
  EXPECT_EQ(s.message().find("secret"), absl::string_view::npos);
  EXPECT_FALSE(TokenAuth::Load(dir + "/short", dir + "/w").ok());
  EXPECT_FALSE(TokenAuth::Load(dir + "/missing", dir + "/w").ok());
  EXPECT_TRUE(TokenAuth::Disabled().Check(std::nullopt, Role::kWorker).ok());
  fs::remove_all(dir);
}

TEST(ServerConfigTest, DefaultsNeedTokensOrLoopbackInsecure) {
  EXPECT_EQ(ParseServerConfig({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto c = ParseServerConfig({"--insecure-no-auth"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(c->lease_duration, absl::Seconds(60));
  EXPECT_FALSE(
      ParseServerConfig({"--insecure-no-auth", "--listen", "0.0.0.0:1"}).ok());
  EXPECT_FALSE(ParseServerConfig({"--insecure-no-auth", "--bogus=1"}).ok());
  EXPECT_FALSE(ParseServerConfig({"--insecure-no-auth", "--tls-cert=x"}).ok());
  EXPECT_FALSE(
      ParseServerConfig({"--insecure-no-auth", "--lease-seconds=0"}).ok());
}

TEST(ServerConfigTest, RootsRepeatAndCommaSplitAndFileIsOverridden) {
  const std::string dir = care::testing::MakeTempDir("care-config");
  std::ofstream(dir + "/server.conf")
      << "# care-server\nlisten = 127.0.0.1:7000\nlease-seconds 5\n"
         "model-root = /from/file\ndata-root = /d1\ninsecure-no-auth = true\n";
  auto c = ParseServerConfig({"--config", dir + "/server.conf", "--model-root",
                              "/a,/b", "--model-root=/c", "--lease-seconds=7"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->roots.model_roots, (std::vector<std::string>{"/a", "/b", "/c"}));
  EXPECT_EQ(c->roots.data_roots, (std::vector<std::string>{"/d1"}));
  EXPECT_EQ(c->listen, "127.0.0.1:7000");
  EXPECT_EQ(c->lease_duration, absl::Seconds(7));
  EXPECT_TRUE(c->insecure_no_auth);
  fs::remove_all(dir);
}

TEST(ServerLogTest, FormatsOneLineWithQuotedValues) {
  std::string line = FormatLogLine(LogLevel::kWarn, "job failed",
                                   {{"job", "job-1"}, {"error", "a \"b\"\nc"}});
  EXPECT_NE(line.find(" level=warn msg=\"job failed\" job=job-1 "
                      "error=\"a \\\"b\\\"\\nc\""),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:0"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:5"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:5"));
  // Literal addresses only, or "localhost": a name that merely starts with
  // "127." is not loopback (issue 23).
  EXPECT_TRUE(IsLoopbackAddress("127.3.4.5:1"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_FALSE(IsLoopbackAddress("127.attacker.example:0"));
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.1.nip.io:0"));
  EXPECT_FALSE(IsLoopbackAddress("[::2]:5"));
  EXPECT_FALSE(IsLoopbackAddress("noport"));
  EXPECT_FALSE(ParseServerConfig(
                   {"--insecure-no-auth", "--listen=127.attacker.example:0"})
                   .ok());
}

TEST(ServerStartTest, BindsEphemeralPortsAndLocksTheDatabase) {
  const std::string dir = care::testing::MakeTempDir("care-start");
  auto config =
      ParseServerConfig({"--insecure-no-auth", "--listen=127.0.0.1:0",
                         "--metrics-listen=127.0.0.1:0",
                         "--db=" + dir + "/jobs.db", "--log-level=error"});
  ASSERT_TRUE(config.ok()) << config.status();
  auto first = CareServer::Start(*config);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_NE((*first)->grpc_address(), "127.0.0.1:0");
  EXPECT_NE((*first)->metrics_address(), "127.0.0.1:0");
  // A second server on the same file is refused (single writer).
  auto second = CareServer::Start(*config);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition)
      << second.status();
  // A second server on the same gRPC port is refused (no SO_REUSEPORT).
  auto taken = *config;
  taken.db = dir + "/other.db";
  taken.listen = (*first)->grpc_address();
  EXPECT_EQ(CareServer::Start(taken).status().code(),
            absl::StatusCode::kUnavailable);
  first->reset();
  // Released on shutdown: the file can be served again.
  EXPECT_TRUE(CareServer::Start(*config).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace care::server
