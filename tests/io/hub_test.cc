// hf:// resolution against FakeHub on loopback serving the sharded
// stories260K fixture in the hub's URL layout: download into the HF cache
// layout, cache hits without network, resume after a dropped connection,
// and each error class (not found, 401, 403, network, sha256, disk full).
#include "care/io/hub.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "care/engine/families.h"
#include "care/io/checkpoint.h"
#include "care/io/file_util.h"
#include "care/io/model.h"
#include "care/io/model_source.h"
#include "care/io/sha256.h"
#include "io/fake_hub.h"
#include "support/fixtures.h"

namespace care::io {
namespace {

using care::testing::FakeHub;

constexpr char kCommit[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kShard2[] = "model-00002-of-00002.safetensors";

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CARE_REQUIRE_FIXTURES();
    root_ = care::testing::MakeTempDir("care-hub");
    src_ = care::testing::FixturePath("stories260K-hf-sharded");
    FakeHub::Repo base = FakeHub::RepoFromDir(src_, kCommit);
    hub_.AddRepo("org/model", base);
    FakeHub::Repo p = base;
    p.access = FakeHub::Access::kPrivate;
    hub_.AddRepo("org/private", p);
    FakeHub::Repo g = base;
    g.access = FakeHub::Access::kGated;
    hub_.AddRepo("org/gated", g);
    FakeHub::Repo flaky = base;
    flaky.drop_first = {kShard2};
    hub_.AddRepo("org/flaky", flaky);
    FakeHub::Repo bad = base;
    bad.corrupt = {kShard2};
    hub_.AddRepo("org/corrupt", bad);
    ASSERT_TRUE(hub_.Start());
    opt_.endpoint = hub_.endpoint();
    opt_.cache_dir = root_ + "/hub";
    opt_.max_attempts = 3;
    opt_.connect_timeout_s = 5;
    opt_.low_speed_time_s = 10;
  }
  void TearDown() override {
    hub_.Stop();
    if (!HasFailure() && !root_.empty()) RemoveTree(root_);
  }

  // Every tensor of `dir` equals the fixture's, byte for byte.
  void ExpectSameWeights(const std::string& dir) {
    auto a = Checkpoint::Open(src_);
    auto b = Checkpoint::Open(dir);
    ASSERT_TRUE(a.ok() && b.ok()) << b.status();
    ASSERT_EQ((*a)->Names(), (*b)->Names());
    for (const std::string& n : (*a)->Names()) {
      ASSERT_EQ((*a)->Raw(n)->bytes, (*b)->Raw(n)->bytes) << n;
    }
  }

  std::string root_, src_;
  FakeHub hub_;
  HubOptions opt_;
};

TEST_F(HubTest, DownloadsIntoCacheLayoutThenHitsCache) {
  absl::StatusOr<std::string> dir = ResolveModelDir("hf://org/model", opt_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string repo_dir = opt_.cache_dir + "/models--org--model";
  EXPECT_EQ(*dir, repo_dir + "/snapshots/" + kCommit);
  EXPECT_EQ(ReadFileToString(repo_dir + "/refs/main").value(), kCommit);
  // Snapshot entries are relative links into blobs/, named by sha256 (LFS).
  auto shard = ReadFileToString(src_ + "/" + kShard2);
  char target[512] = {0};
  ASSERT_GT(::readlink((*dir + "/" + kShard2).c_str(), target, 511), 0);
  EXPECT_EQ(std::string(target), "../../blobs/" + Sha256Hex(*shard));
  EXPECT_TRUE(IsRegularFile(*dir + "/tokenizer.model"));
  EXPECT_FALSE(PathExists(*dir + "/original"));  // Subfolders skipped.
  ExpectSameWeights(*dir);
  EXPECT_TRUE(OpenModel(*dir, ::care::engine::Families()).ok());

  // Cached now: the server is not asked again, even with it gone.
  hub_.Stop();
  absl::StatusOr<std::string> again = ResolveModelDir("hf://org/model", opt_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *dir);
  absl::StatusOr<std::string> by_commit =
      ResolveModelDir(std::string("hf://org/model@") + kCommit, opt_);
  ASSERT_TRUE(by_commit.ok());
  EXPECT_EQ(*by_commit, *dir);
}

TEST_F(HubTest, RefetchesOnlyWhatIsMissing) {
  absl::StatusOr<std::string> dir = ResolveModelDir("hf://org/model", opt_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  // Lose one shard (blob and link), as an interrupted copy might.
  const std::string sha = Sha256Hex(*ReadFileToString(src_ + "/" + kShard2));
  ::unlink((*dir + "/" + kShard2).c_str());
  ::unlink((opt_.cache_dir + "/models--org--model/blobs/" + sha).c_str());
  EXPECT_FALSE(FindCachedSnapshot(opt_, "org/model", "main").has_value());
  const int before = hub_.request_count();
  absl::StatusOr<std::string> again = ResolveModelDir("hf://org/model", opt_);
  ASSERT_TRUE(again.ok()) << again.status();
  ExpectSameWeights(*again);
  // The file list, then only the missing shard.
  std::vector<std::string> log = hub_.requests();
  ASSERT_EQ(hub_.request_count() - before, 2);
  EXPECT_NE(log.back().find(kShard2), std::string::npos) << log.back();
}

TEST_F(HubTest, ResumesAfterDroppedConnection) {
  absl::StatusOr<std::string> dir = ResolveModelDir("hf://org/flaky", opt_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  ExpectSameWeights(*dir);
  // The second GET of the shard asked only for the missing half.
  const size_t size = ReadFileToString(src_ + "/" + kShard2)->size();
  bool resumed = false;
  for (const std::string& r : hub_.requests()) {
    if (r.find(kShard2) != std::string::npos &&
        r.find("bytes=" + std::to_string(size / 2) + "-") !=
            std::string::npos) {
      resumed = true;
    }
  }
  EXPECT_TRUE(resumed);
  EXPECT_FALSE(PathExists(opt_.cache_dir + "/models--org--flaky/blobs/" +
                          Sha256Hex(*ReadFileToString(src_ + "/" + kShard2)) +
                          ".incomplete"));
}

TEST_F(HubTest, AccessErrors) {
  // Private repo without a token: the hub answers 401 RepoNotFound.
  absl::StatusOr<std::string> r = ResolveModelDir("hf://org/private", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(hub_.endpoint() +
                                      "/api/models/org/private/revision/main"),
            std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("HF_TOKEN"), std::string::npos);
  // Gated without a token: 403.
  r = ResolveModelDir("hf://org/gated", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("403"), std::string::npos);
  // With the token both work.
  HubOptions authed = opt_;
  authed.token = FakeHub::kToken;
  EXPECT_TRUE(ResolveModelDir("hf://org/private", authed).ok());
  EXPECT_TRUE(ResolveModelDir("hf://org/gated", authed).ok());
  // Unknown repo and unknown revision.
  r = ResolveModelDir("hf://org/nothing", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  r = ResolveModelDir("hf://org/model@v9", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("revision not found"), std::string::npos)
      << r.status();
}

TEST_F(HubTest, NetworkFailureNamesTheUrl) {
  HubOptions o = opt_;
  o.endpoint = hub_.endpoint();
  hub_.Stop();  // Nothing listens on that port any more.
  absl::StatusOr<std::string> r = ResolveModelDir("hf://org/model", o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(o.endpoint + "/api/models/org/model"),
            std::string::npos)
      << r.status();
}

TEST_F(HubTest, Sha256MismatchIsDataLoss) {
  absl::StatusOr<std::string> r = ResolveModelDir("hf://org/corrupt", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("sha256"), std::string::npos);
  EXPECT_NE(r.status().message().find("/resolve/"), std::string::npos);
  // Nothing that looks complete is left behind.
  EXPECT_FALSE(FindCachedSnapshot(opt_, "org/corrupt", "main").has_value());
}

TEST_F(HubTest, DiskFullIsResourceExhausted) {
  // The partial file of shard 2 is /dev/full: every write fails ENOSPC,
  // through the same write path a full disk takes.
  const std::string sha = Sha256Hex(*ReadFileToString(src_ + "/" + kShard2));
  const std::string blobs = opt_.cache_dir + "/models--org--model/blobs";
  ASSERT_TRUE(MakeDirs(blobs).ok());
  ASSERT_EQ(::symlink("/dev/full", (blobs + "/" + sha + ".incomplete").c_str()),
            0);
  absl::StatusOr<std::string> r = ResolveModelDir("hf://org/model", opt_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("disk full"), std::string::npos)
      << r.status();
}

TEST_F(HubTest, OfflineAndLocalUris) {
  HubOptions o = opt_;
  o.offline = true;
  absl::StatusOr<std::string> r = ResolveModelDir("hf://org/model", o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("HF_HUB_OFFLINE"), std::string::npos);
  EXPECT_EQ(hub_.request_count(), 0);

  // URIs are absolute and free of "..": use the canonical fixture path.
  const std::string abs = std::filesystem::canonical(src_).string();
  EXPECT_EQ(ResolveModelDir(abs, o).value(), abs);
  EXPECT_EQ(ResolveModelDir("file://" + abs, o).value(), abs);
  EXPECT_EQ(ResolveModelDir("/no/such/model", o).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolveModelDir("relative/dir", o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HubOptionsTest, CacheLayoutNames) {
  EXPECT_EQ(HubRepoCacheDir("/c", "meta-llama/Llama-3.1-8B"),
            "/c/models--meta-llama--Llama-3.1-8B");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace care::io
