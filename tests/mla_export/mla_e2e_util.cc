#include "mla_export/mla_e2e_util.h"

#include <nlohmann/json.hpp>

namespace care::testing {

void MlaEndToEndTest::StartServeWorker() {
  StartWorker("w1", {BinaryPath("worker/cli/care-worker"), "serve",
                     "--work-dir", dir_ + "/work"});
}

CommandResult MlaEndToEndTest::SubmitDeepseekV3(
    const std::string& out, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {
      "submit",      "--wait",     "--plain",   "--model",    model_,
      "--out",       out,          "--kv-save", "0.5",        "--layout",
      "deepseek-v3", "--rope-dim", "8",         "--freqfold", "1"};
  const std::vector<std::string> data = {
      "--calib",         fixtures_ + "/tinystories/tinystories_val_head.txt",
      "--calib-samples", "64",
      "--calib-seq-len", "32",
      "--eval",          tokens_,
      "--eval-seq-len",  "128",
      "--eval-windows",  "8"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), data.begin(), data.end());
  return Carectl(args);
}

std::string MlaEndToEndTest::SubmittedId(const CommandResult& wait) {
  return wait.out.substr(10, wait.out.find('\n') - 10);
}

void MlaEndToEndTest::ExpectReloadedPpl(const std::string& out, double ppl) {
  CommandResult eval =
      RunCommand({BinaryPath("worker/cli/care-worker"), "eval", "--model", out,
                  "--tokens", tokens_, "--seq-len", "128", "--max-windows", "8",
                  "--threads", "1", "--json"},
                 logs_, absl::Seconds(60));
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const nlohmann::json reloaded =
      nlohmann::json::parse(eval.out, nullptr, false);
  ASSERT_TRUE(reloaded.is_object()) << eval.out;
  EXPECT_NEAR(reloaded.value("ppl", 0.0), ppl, 1e-4 * ppl);
}

}  // namespace care::testing
