// care-worker tokenize end to end: the built binary on the Qwen3 fixture.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace {

struct Result {
  int exit_code;
  std::string out;
};

Result RunTokenize(const std::string& args) {
  const std::string cmd = care::testing::BinaryPath("worker/cli/care-worker") +
                          " tokenize " + args + " 2>/dev/null";
  Result r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(TokenizeCommandTest, TextJsonlAndDecode) {
  CARE_REQUIRE_FIXTURES();
  const std::string model =
      "--model " + care::testing::FixturePath("qwen3-tokenizer");
  // First line of reference.jsonl: "Hello, world!" -> 9707 11 1879 0.
  Result text = RunTokenize(model + " --text 'Hello, world!'");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.out, "9707 11 1879 0\n");
  Result dec = RunTokenize(model + " --decode --text '9707,11,1879,0'");
  EXPECT_EQ(dec.exit_code, 0);
  EXPECT_EQ(dec.out, "Hello, world!\n");

  const std::string dir = care::testing::MakeTempDir("tokenize_cli");
  const std::string in = dir + "/in.jsonl";
  std::ofstream(in)
      << "{\"text\": \"Hello, world!\"}\n\n{\"text\": \"<|im_end|>\"}\n";
  Result jsonl = RunTokenize(model + " --jsonl " + in);
  EXPECT_EQ(jsonl.exit_code, 0);
  EXPECT_EQ(jsonl.out, "{\"ids\":[9707,11,1879,0]}\n{\"ids\":[151645]}\n");

  std::ofstream(in) << "{\"body\": \"x\"}\n";
  EXPECT_EQ(RunTokenize(model + " --jsonl " + in).exit_code, 1);
  EXPECT_EQ(RunTokenize(model).exit_code, 2);  // Neither --text nor --jsonl.
  EXPECT_EQ(RunTokenize("--model /nonexistent --text x").exit_code, 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
