// care-worker tokenize end to end: the built binary on the Qwen3 fixture.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace {

using Result = ::care::testing::ShellResult;

Result RunTokenize(const std::string& args) {
  return ::care::testing::RunCareWorker("tokenize " + args,
                                        /*with_stderr=*/false);
}

TEST(TokenizeCommandTest, TextJsonlAndDecode) {
  CARE_REQUIRE_FIXTURES();
  const std::string model =
      "--model " + care::testing::FixturePath("qwen3-tokenizer");
  // First line of reference.jsonl: "Hello, world!" -> 9707 11 1879 0.
  Result text = RunTokenize(model + " --text 'Hello, world!'");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.output, "9707 11 1879 0\n");
  Result dec = RunTokenize(model + " --decode --text '9707,11,1879,0'");
  EXPECT_EQ(dec.exit_code, 0);
  EXPECT_EQ(dec.output, "Hello, world!\n");

  const std::string dir = care::testing::MakeTempDir("tokenize_cli");
  const std::string in = dir + "/in.jsonl";
  std::ofstream(in)
      << "{\"text\": \"Hello, world!\"}\n\n{\"text\": \"<|im_end|>\"}\n";
  Result jsonl = RunTokenize(model + " --jsonl " + in);
  EXPECT_EQ(jsonl.exit_code, 0);
  EXPECT_EQ(jsonl.output, "{\"ids\":[9707,11,1879,0]}\n{\"ids\":[151645]}\n");

  std::ofstream(in) << "{\"body\": \"x\"}\n";
  EXPECT_EQ(RunTokenize(model + " --jsonl " + in).exit_code, 1);
  EXPECT_EQ(RunTokenize(model).exit_code, 2);  // Neither --text nor --jsonl.
  EXPECT_EQ(RunTokenize("--model /nonexistent --text x").exit_code, 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
