// care-worker eval end to end on the stories260K fixture: flags, stream
// reading, both window forms, JSON output, exit codes.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "support/fixtures.h"

namespace {

using ::care::testing::BinaryPath;
using ::care::testing::FixturePath;
using Result = ::care::testing::ShellResult;

// stderr discarded: the tests parse stdout.
Result RunWorker(const std::string& args) {
  return ::care::testing::RunCareWorker(args, /*with_stderr=*/false);
}

std::string Model() { return FixturePath("stories260K-hf"); }
std::string Tokens() {
  return FixturePath("stories260K_reference/tinystories_val_head.tok512.u16");
}

TEST(EvalCommandTest, JsonMatchesReferencePerplexity) {
  CARE_REQUIRE_FIXTURES();
  const Result r =
      RunWorker("eval --model " + Model() + " --tokens " + Tokens() +
                " --seq-len 256 --max-windows 16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["windows"], 16);
  EXPECT_EQ(j["predictions"], 4080);
  // stories260K_reference/SOURCE.md, P1 T=256: 1.353581, ppl 3.871264.
  EXPECT_NEAR(j["mean_nll"].get<double>(), 1.353581, 1e-4);
  EXPECT_NEAR(j["ppl"].get<double>(), 3.871264, 5e-4);
  EXPECT_GT(j["timing"]["seconds"].get<double>(), 0.0);
  EXPECT_GT(j["timing"]["tokens_per_second"].get<double>(), 0.0);
}

TEST(EvalCommandTest, BosFormAndTextData) {
  CARE_REQUIRE_FIXTURES();
  const Result bos =
      RunWorker("eval --model " + Model() + " --tokens " + Tokens() +
                " --seq-len 256 --max-windows 8 "
                "--bos --json --threads 1");
  ASSERT_EQ(bos.exit_code, 0);
  const auto j = nlohmann::json::parse(bos.output, nullptr, false);
  EXPECT_EQ(j["predictions"], 2040);
  EXPECT_NEAR(j["mean_nll"].get<double>(), 1.471694, 1e-4);  // P2 reference
  // Text through the model's tokenizer gives the same stream as the .u16.
  const Result text =
      RunWorker("eval --model " + Model() + " --data " +
                FixturePath("tinystories/tinystories_val_head.txt") +
                " --seq-len 256 --max-windows 16");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.output.find("mean_nll     1.35358"), std::string::npos)
      << text.output;
}

TEST(EvalCommandTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunWorker("eval --seq-len 256").exit_code, 2);  // no --model
  EXPECT_EQ(
      RunWorker("eval --model x --tokens y --data z --seq-len 8").exit_code, 2);
  EXPECT_EQ(RunWorker("eval --model x --tokens y --seq-len 1").exit_code, 2);
  EXPECT_EQ(
      RunWorker("eval --model x --tokens y --seq-len 8 --bogus").exit_code, 2);
  // A model directory that does not exist: the evaluation fails (1).
  EXPECT_EQ(RunWorker("eval --model /nonexistent/model --tokens y --seq-len 8")
                .exit_code,
            1);
}

}  // namespace
