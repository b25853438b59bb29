// care-worker convert as a process: flags, exit codes, report file, summary,
// and `care-worker eval` on the output reproducing the reported perplexity.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "support/fixtures.h"

namespace {

using Result = ::care::testing::ShellResult;
using ::care::testing::RunCareWorker;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

TEST(ConvertCliTest, ConvertThenEvalReproducesTheConvertedPerplexity) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("convert_cli");
  const std::string model = ::care::testing::FixturePath("stories260K-hf");
  const std::string text =
      ::care::testing::FixturePath("tinystories/tinystories_val_head.txt");
  const Result conv = RunCareWorker(absl::StrCat(
      "convert --model ", model, " --out ", dir, "/out --kv-save 0.5 --calib ",
      text, " --calib-samples 64 --eval ", text,
      " --eval-windows 4 --eval-seq-len 128 --allocation adjusted --report ",
      dir, "/report.json"));
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  EXPECT_NE(conv.output.find("(50.0% saved)"), std::string::npos)
      << conv.output;
  // The last line names the HTML report written beside the JSON.
  EXPECT_NE(conv.output.find(
                absl::StrCat("  report: ", dir, "/out/care_report.html\n")),
            std::string::npos)
      << conv.output;
  EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/out/care_report.html"));
  const nlohmann::json report = ReadJson(dir + "/report.json");
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["kv_width_after"], 160);
  EXPECT_EQ(report["allocation_chosen"], "adjusted");
  // Calibration [0, 0.9) and evaluation [0.9, 1) of the same file.
  const int64_t eval_begin = report["evaluation"]["range"][0];
  EXPECT_GE(eval_begin, report["calibration"]["range"][1].get<int64_t>());
  EXPECT_EQ(ReadJson(dir + "/out/care_report.json")["converted"],
            report["converted"]);

  const Result eval = RunCareWorker(absl::StrCat(
      "eval --model ", dir, "/out --data ", text,
      " --seq-len 128 --max-windows 4 --json --start ", eval_begin));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json e =
      nlohmann::json::parse(eval.output, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(e.is_discarded()) << eval.output;
  // Same factors, same windows, same engine: identical numbers.
  EXPECT_EQ(e["mean_nll"].get<double>(),
            report["converted"]["mean_nll"].get<double>());
  std::filesystem::remove_all(dir);
}

// The DeepSeek-V3 layout writes and names the same HTML page, rendered from
// its care_report.json (one section per step of the export).
TEST(ConvertCliTest, DeepseekV3LayoutWritesTheHtmlReport) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("convert_cli_dsv3");
  const std::string text =
      ::care::testing::FixturePath("tinystories/tinystories_val_head.txt");
  const Result conv = RunCareWorker(absl::StrCat(
      "convert --model ", ::care::testing::FixturePath("stories260K-hf"),
      " --out ", dir, "/out --layout deepseek-v3 --rope-dim 8 --freqfold 1 ",
      "--latent-refine auto --kv-save 0.5 --calib ", text,
      " --calib-samples 64 --eval ", text,
      " --eval-windows 4 --eval-seq-len 128"));
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  EXPECT_NE(conv.output.find(
                absl::StrCat("  report: ", dir, "/out/care_report.html\n")),
            std::string::npos)
      << conv.output;
  std::ifstream f(dir + "/out/care_report.html");
  const std::string html((std::istreambuf_iterator<char>(f)), {});
  for (const char* section :
       {"<section id=\"deepseek_v3\">", "<section id=\"steps\">",
        "<section id=\"mla_candidates\">", "<section id=\"errors\">",
        "<section id=\"rope_split\">", "</html>"}) {
    EXPECT_NE(html.find(section), std::string::npos) << section;
  }
  const nlohmann::json report = ReadJson(dir + "/out/care_report.json");
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["layout"], "deepseek_v3");
  EXPECT_EQ(report["layers"].size(), 5u);
  // --latent-refine auto: the split scored without and with 4 rounds, each
  // without and with the o_proj refit (its default, auto).
  EXPECT_EQ(report["deepseek_v3"]["latent_refine_auto"], true);
  EXPECT_EQ(report["deepseek_v3"]["o_proj_refit_auto"], true);
  const nlohmann::json& cands = report["deepseek_v3"]["candidates"];
  ASSERT_EQ(cands.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(cands[i]["latent_refine"], i < 2 ? 0 : 4) << i;
    EXPECT_EQ(cands[i]["o_proj_refit"], i % 2 == 1) << i;
  }
  EXPECT_NE(conv.output.find("o_proj refit"), std::string::npos) << conv.output;
  std::filesystem::remove_all(dir);
}

TEST(ConvertCliTest, BadArgumentsAreUsageErrors) {
  CARE_REQUIRE_FIXTURES();
  const std::string model = ::care::testing::FixturePath("stories260K-hf");
  const std::string text =
      ::care::testing::FixturePath("tinystories/tinystories_val_head.txt");
  Result r = RunCareWorker(
      absl::StrCat("convert --model ", model, " --out /tmp/x --calib ", text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("exactly one of --kv-save"), std::string::npos)
      << r.output;
  r = RunCareWorker(absl::StrCat("convert --model ", model,
                                 " --out /tmp/x --kv-save 1.5 --calib ", text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("allowed 0 <= F <= 0.96875"), std::string::npos)
      << r.output;
  r = RunCareWorker(
      absl::StrCat("convert --model ", model,
                   " --out /tmp/x --rank 8 --method lowrank --calib ", text));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("care, care-c, asvd, svd or pca"), std::string::npos);
  r = RunCareWorker(absl::StrCat(
      "convert --model ", model, " --out /tmp/x --kv-save 0.5 --calib ", text,
      " --layout deepseek-v3 --latent-refine often"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--latent-refine must be auto or a number of "
                          "rounds in [0, 100], got 'often'"),
            std::string::npos)
      << r.output;
  r = RunCareWorker(absl::StrCat("convert --model ", model,
                                 " --out /tmp/x --kv-save 0.5 --calib ", text,
                                 " --layout deepseek-v3 --o-proj-refit maybe"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(
      r.output.find("unknown o_proj refit \"maybe\"; expected auto, off or on"),
      std::string::npos)
      << r.output;
  r = RunCareWorker(absl::StrCat("convert --model ", model,
                                 " --out /tmp/x --kv-save 0.5 --calib ", text,
                                 " --o-proj-refit on"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(
      r.output.find("--o-proj-refit applies to --layout deepseek-v3 only"),
      std::string::npos)
      << r.output;
}

}  // namespace
