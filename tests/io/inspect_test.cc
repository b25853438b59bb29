// `care-worker inspect` run as a real process: text and --json output for
// the fixtures (local path, file:// and hf:// through FakeHub), and one clear
// stderr line with a non-zero status on bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "care/io/file_util.h"
#include "io/fake_hub.h"
#include "support/fixtures.h"

namespace care::io {
namespace {

struct RunResult {
  int status = -1;
  std::string out, err;
};

class InspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CARE_REQUIRE_FIXTURES();
    tmp_ = care::testing::MakeTempDir("care-inspect");
  }
  void TearDown() override {
    if (!HasFailure() && !tmp_.empty()) RemoveTree(tmp_);
  }
  // Runs care-worker with `args` (shell-quoted by the caller), `env` first.
  RunResult Run(const std::string& args, const std::string& env = "") {
    const std::string cmd = absl::StrCat(
        env, " ", care::testing::BinaryPath("worker/cli/care-worker"),
        " inspect ", args, " >", tmp_, "/out 2>", tmp_, "/err");
    RunResult r;
    int rc = std::system(cmd.c_str());
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = ReadFileToString(tmp_ + "/out").value_or("");
    r.err = ReadFileToString(tmp_ + "/err").value_or("");
    return r;
  }
  std::string Fixture(const char* name) {
    return std::filesystem::canonical(care::testing::FixturePath(name))
        .string();
  }
  std::string tmp_;
};

TEST_F(InspectTest, JsonDescribesStories) {
  RunResult r = Run(Fixture("stories260K-hf-bf16") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["num_hidden_layers"], 5);
  EXPECT_EQ(j["num_attention_heads"], 8);
  EXPECT_EQ(j["num_key_value_heads"], 4);
  EXPECT_EQ(j["head_dim"], 8);
  EXPECT_EQ(j["kv_width"], 32);              // g * d_h = 4 * 8
  EXPECT_EQ(j["kv_values_per_token"], 320);  // 2 * 32 * 5 layers
  EXPECT_EQ(j["dtype"], "BF16");
  EXPECT_EQ(j["bytes"], 520064);  // Half of the F32 total_size 1040128.
  EXPECT_EQ(j["parameters"], 260032);
  EXPECT_EQ(j["tensors"].size(), 47u);
  EXPECT_TRUE(r.err.empty());
}

TEST_F(InspectTest, TextForShardedAndFileUri) {
  RunResult r = Run("file://" + Fixture("stories260K-hf-sharded"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("heads         8 query, 4 KV (group 2)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("parameters    260,032"), std::string::npos);
  EXPECT_NE(r.out.find("model-00002-of-00002.safetensors"), std::string::npos);
  EXPECT_NE(r.out.find("model.layers.4.self_attn.v_proj.weight"),
            std::string::npos);
}

TEST_F(InspectTest, HubUriThroughLoopbackServer) {
  care::testing::FakeHub hub;
  hub.AddRepo("org/tiny", care::testing::FakeHub::RepoFromDir(
                              Fixture("tinygqa-hf"),
                              "89abcdef0123456789abcdef0123456789abcdef"));
  ASSERT_TRUE(hub.Start());
  const std::string env = absl::StrCat("HF_ENDPOINT=", hub.endpoint(),
                                       " HF_HUB_CACHE=", tmp_, "/cache");
  RunResult r = Run("hf://org/tiny --json", env);
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_EQ(j["kv_width"], 64);  // 2 KV heads * 32
  EXPECT_EQ(j["tie_word_embeddings"], false);
  // A missing repo: status 1 and one line naming the URL.
  r = Run("hf://org/absent", env);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("/api/models/org/absent"), std::string::npos) << r.err;
}

TEST_F(InspectTest, BadInput) {
  RunResult r = Run("/no/such/model");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "care-worker inspect: model directory /no/such/model does "
            "not exist\n");
  EXPECT_TRUE(r.out.empty());
  r = Run("");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("MODEL_URI"), std::string::npos);
  r = Run(Fixture("stories260K-hf") + " --jsn");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--jsn"), std::string::npos);
  r = Run("relative/path");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("absolute"), std::string::npos);
  // A directory without weights.
  r = Run(Fixture("stories260K"));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace care::io
