// `care-worker eval --tasks / --rolling` as a process on the stories260K
// fixture: JSON keys, accuracy above chance on the TinyStories task, the
// WikiText protocol on a slice, plain perplexity still alongside, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "support/fixtures.h"

namespace {

using ::care::testing::FixturePath;
using Result = ::care::testing::ShellResult;

std::string Data(const std::string& name) {
  return std::string(CARE_EVAL_TESTDATA) + "/" + name;
}
std::string Model() { return FixturePath("stories260K-hf"); }

nlohmann::json Json(const Result& r) {
  return nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
}

TEST(EvalCliTest, TasksJsonAndTable) {
  CARE_REQUIRE_FIXTURES();
  const Result r = ::care::testing::RunCareWorker(
      "eval --model " + Model() + " --tasks " +
          Data("stories_which_context.jsonl") + "," + Data("arc.jsonl") +
          " --task-format generic,arc --limit 40 --threads 1 --json",
      /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = Json(r);
  ASSERT_TRUE(j.contains("tasks")) << r.output;
  ASSERT_EQ(j["tasks"].size(), 2u);
  const nlohmann::json& s = j["tasks"][0];
  EXPECT_EQ(s["name"], "stories_which_context");
  EXPECT_EQ(s["format"], "generic");
  EXPECT_EQ(s["items"], 40);
  EXPECT_GT(s["acc"].get<double>(), 0.5);  // chance: 0.25
  EXPECT_GT(s["acc_stderr"].get<double>(), 0.0);
  EXPECT_EQ(j["tasks"][1]["items"], 3);
  EXPECT_FALSE(j.contains("ppl"));  // no --data: no plain perplexity

  const Result table =
      ::care::testing::RunCareWorker("eval --model " + Model() + " --tasks " +
                                         Data("piqa.jsonl") + " --threads 1",
                                     /*with_stderr=*/false);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("acc_norm"), std::string::npos);
  EXPECT_NE(table.output.find("piqa"), std::string::npos);
}

TEST(EvalCliTest, RollingWikiTextSliceNextToPlainWindows) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("eval_cli");
  // The first 8 KB of WikiText-2 test: a few pages.
  std::ifstream in(FixturePath("wikitext2/wiki.test.raw"), std::ios::binary);
  std::string text(8192, '\0');
  in.read(text.data(), text.size());
  const std::string slice = dir + "/wiki_slice.txt";
  std::ofstream(slice, std::ios::binary) << text;
  const Result r = ::care::testing::RunCareWorker(
      "eval --model " + Model() + " --data " + slice +
          " --rolling --documents wikitext --max-length 256 --threads 1 "
          "--json",
      /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = Json(r);
  ASSERT_TRUE(j.contains("rolling")) << r.output;
  const nlohmann::json& x = j["rolling"];
  EXPECT_GE(x["documents"].get<int>(), 2);
  EXPECT_EQ(x["stride"], 256);
  EXPECT_EQ(x["prefix"], "bos");
  // The whitespace before the first heading is no page (lm-eval's split).
  EXPECT_GT(x["bytes"].get<int>(), 8000);
  EXPECT_LE(x["bytes"].get<int>(), 8192);
  // Consistency of lm-eval's three figures: all from the same LL.
  const double ll =
      -x["mean_nll"].get<double>() * x["predictions"].get<double>();
  EXPECT_NEAR(std::log(x["word_perplexity"].get<double>()),
              -ll / x["words"].get<double>(), 1e-6);
  EXPECT_NEAR(x["bits_per_byte"].get<double>(),
              -ll / x["bytes"].get<double>() / std::log(2.0), 1e-6);
  EXPECT_GT(x["word_perplexity"].get<double>(),
            x["byte_perplexity"].get<double>());
  // Plain windows and rolling in one run; overlapping windows (stride < W)
  // give every token more context: lower NLL than disjoint ones.
  const Result both = ::care::testing::RunCareWorker(
      "eval --model " + Model() + " --data " +
          FixturePath("tinystories/tinystories_val_head.txt") +
          " --seq-len 128 --max-windows 4 --threads 1 --json",
      /*with_stderr=*/false);
  ASSERT_EQ(both.exit_code, 0) << both.output;
  EXPECT_TRUE(Json(both).contains("ppl"));
  const Result disjoint = ::care::testing::RunCareWorker(
      "eval --model " + Model() + " --data " + slice +
          " --rolling --max-length 64 --rolling-prefix none --threads 1 "
          "--json",
      false);
  const Result strided = ::care::testing::RunCareWorker(
      "eval --model " + Model() + " --data " + slice +
          " --rolling --max-length 64 --stride 16 --rolling-prefix none "
          "--threads 1 --json",
      false);
  ASSERT_EQ(disjoint.exit_code, 0) << disjoint.output;
  ASSERT_EQ(strided.exit_code, 0) << strided.output;
  EXPECT_EQ(Json(disjoint)["rolling"]["predictions"],
            Json(strided)["rolling"]["predictions"]);
  EXPECT_LT(Json(strided)["rolling"]["mean_nll"].get<double>(),
            Json(disjoint)["rolling"]["mean_nll"].get<double>());
  std::filesystem::remove_all(dir);
}

// `care-worker convert` with the task and rolling flags: the report file
// has both, before and after.
TEST(EvalCliTest, ConvertWithTasksAndRolling) {
  CARE_REQUIRE_FIXTURES();
  const std::string dir = ::care::testing::MakeTempDir("eval_cli_convert");
  const Result r = ::care::testing::RunCareWorker(
      "convert --model " + Model() + " --out " + dir + "/out" +
      " --kv-save 0.75 --calib " +
      FixturePath("stories260K_reference/tinystories_val_head.tok512.u16") +
      " --calib-samples 32 --calib-range 0:0.5 --eval " +
      FixturePath("stories260K_reference/tinystories_val_head.tok512.u16") +
      " --eval-range 0.9:1 --eval-seq-len 64 --eval-windows 4"
      " --eval-rolling-stride 32 --eval-tasks " +
      Data("stories_which_context.jsonl") + "," + Data("boolq.jsonl") +
      " --eval-task-limit 16 --threads 1 --quiet --report " + dir +
      "/report.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir + "/report.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["tasks"].size(), 2u);
  EXPECT_EQ(j["tasks"][0]["name"], "stories_which_context");
  EXPECT_EQ(j["tasks"][0]["items"], 16);
  EXPECT_EQ(j["tasks"][1]["format"], "boolq");
  EXPECT_GT(j["tasks"][0]["original"]["acc"].get<double>(), 0.5);
  // An id file: one document, token perplexity only.
  EXPECT_EQ(j["rolling"]["stride"], 32);
  EXPECT_EQ(j["rolling"]["original"]["documents"], 1);
  EXPECT_GT(j["rolling"]["converted"]["token_perplexity"].get<double>(),
            j["rolling"]["original"]["token_perplexity"].get<double>());
  EXPECT_EQ(j["rolling"]["original"]["word_perplexity"], 0.0);
  // A bad task file fails before calibration, naming file, line and field.
  const Result bad = ::care::testing::RunCareWorker(
      "convert --model " + Model() + " --out " + dir + "/bad --kv-save 0.5" +
      " --calib " +
      FixturePath("stories260K_reference/tinystories_val_head.tok512.u16") +
      " --eval-tasks " + Data("arc.jsonl") + " --eval-task-format piqa");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;  // InvalidArgument
  EXPECT_NE(bad.output.find("arc.jsonl:1: field 'goal': missing"),
            std::string::npos)
      << bad.output;
  std::filesystem::remove_all(dir);
}

TEST(EvalCliTest, Errors) {
  CARE_REQUIRE_FIXTURES();
  auto run = [](const std::string& args) {
    return ::care::testing::RunCareWorker("eval --model " + Model() + " " +
                                          args);
  };
  EXPECT_EQ(
      run("--tasks a.jsonl,b.jsonl --task-format arc,piqa,boolq").exit_code, 2);
  EXPECT_EQ(run("--tasks x.jsonl --task-format mmlu").exit_code, 2);
  EXPECT_EQ(run("--rolling").exit_code, 2);
  EXPECT_EQ(run("--data x.txt --rolling --max-length 8 --stride 9").exit_code,
            2);
  const Result bad =
      run("--tasks " + Data("arc.jsonl") + " --task-format piqa");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("arc.jsonl:1: field 'goal': missing"),
            std::string::npos)
      << bad.output;
}

}  // namespace
