// Real-model task accuracy on TinyStories tasks (make_story_tasks.py):
// stories260K and tinygqa pick which of four paragraph openings a sentence
// continues (testdata/stories_which_context.jsonl, 64 items, partial
// scoring, chance 0.25) well above chance, and choose the true next
// sentence among four (stories_next_sentence.jsonl, 32 items) above it; and
// through ConvertModel, the report's accuracy of an aggressive conversion
// (87.5 % of the KV cache saved) drops against a mild one (50 %), both
// scored on the same requests as the original.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "care/convert/pipeline.h"
#include "care/engine/families.h"
#include "care/eval/documents.h"
#include "care/eval/multiple_choice.h"
#include "care/eval/rolling.h"
#include "care/eval/task.h"
#include "care/io/model.h"
#include "care/tokenizer/tokenizer.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert {
namespace {

std::string StoryTask(const std::string& name = "stories_which_context") {
  return std::string(CARE_EVAL_TESTDATA) + "/" + name + ".jsonl";
}

class AccuracyTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { dir_ = ::care::testing::MakeTempDir("eval_acc"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Model() const { return ::care::testing::FixturePath(GetParam()); }
  std::string dir_;
};

// acc and acc_norm of the model on a task file.
eval::TaskResult Score(const std::string& model_dir, const std::string& file) {
  absl::StatusOr<io::Model> model =
      io::OpenModel(model_dir, engine::Families());
  EXPECT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> tokenizer =
      tok::LoadTokenizer(model_dir);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<eval::Task> task = eval::ReadTaskFile(file);
  EXPECT_TRUE(task.ok()) << task.status();
  absl::StatusOr<eval::EncodedTask> enc = eval::EncodeTask(*task, **tokenizer);
  EXPECT_TRUE(enc.ok()) << enc.status();
  eval::SequenceOptions so;
  so.engine.device = ::care::testing::TestDevice();
  so.engine.threads = 1;
  absl::StatusOr<eval::TaskResult> r =
      eval::ScoreTask(model->config, *model->weights, *enc, so);
  EXPECT_TRUE(r.ok()) << r.status();
  std::cout << model_dir << " " << file << ": acc " << r->acc << " +- "
            << r->acc_stderr << ", acc_norm " << r->acc_norm << " +- "
            << r->acc_norm_stderr << "\n";
  return *r;
}

TEST_P(AccuracyTest, WellAboveChanceOnTinyStoriesTasks) {
  CARE_REQUIRE_FIXTURES();
  // Binomial tails at chance (p = 0.25): P(acc >= 0.6 of 64) ~ 1e-9,
  // P(acc_norm >= 0.375 of 32) ~ 0.08 each model, so the second bound is a
  // sanity floor, the first the claim. Measured: stories260K 0.83 / 0.45,
  // tinygqa 0.69 / 0.42.
  const eval::TaskResult which = Score(Model(), StoryTask());
  EXPECT_EQ(which.items, 64);
  EXPECT_GE(which.acc, 0.6);
  const eval::TaskResult next =
      Score(Model(), StoryTask("stories_next_sentence"));
  EXPECT_EQ(next.items, 32);
  EXPECT_GE(next.acc_norm, 0.375);
}

TEST_P(AccuracyTest, AggressiveConversionLosesAccuracy) {
  CARE_REQUIRE_FIXTURES();
  auto convert = [&](double save) -> absl::StatusOr<ConversionReport> {
    ConvertOptions o = testing::SmallOptions(
        Model(), dir_ + "/out" + std::to_string(static_cast<int>(save * 1000)),
        Budget::KvSave(save), Method::kCare);
    o.device = ::care::testing::TestDevice();
    o.eval_tasks = {{.name = "stories", .path = StoryTask()}};
    return ConvertModel(o);
  };
  absl::StatusOr<ConversionReport> mild = convert(0.5);
  ASSERT_TRUE(mild.ok()) << mild.status();
  absl::StatusOr<ConversionReport> aggressive = convert(0.875);
  ASSERT_TRUE(aggressive.ok()) << aggressive.status();
  ASSERT_EQ(mild->tasks.size(), 1u);
  ASSERT_EQ(aggressive->tasks.size(), 1u);
  const TaskAccuracyReport& m = mild->tasks[0];
  const TaskAccuracyReport& a = aggressive->tasks[0];
  std::cout << GetParam() << ": original acc " << m.original.acc
            << ", 50% saved " << m.converted.acc << ", 87.5% saved "
            << a.converted.acc << " (acc_norm " << m.original.acc_norm << " / "
            << m.converted.acc_norm << " / " << a.converted.acc_norm << ")\n";
  EXPECT_EQ(m.name, "stories");
  EXPECT_EQ(m.items, 64);
  // The original model is the same model in both runs.
  EXPECT_DOUBLE_EQ(m.original.acc, a.original.acc);
  EXPECT_DOUBLE_EQ(m.original.acc_norm, a.original.acc_norm);
  // Measured (64 items, the same requests for all three): stories260K
  // 0.83 original, 0.70 at 50 %, 0.42 at 87.5 %; tinygqa 0.69, 0.69, 0.36.
  // The paired difference of two accuracies on 64 items has a standard
  // error below 0.09, so a 0.15 margin is well inside the measured drops
  // (0.28, 0.33) and well outside noise around zero.
  EXPECT_LT(a.converted.acc, m.converted.acc - 0.15);
  EXPECT_GE(m.converted.acc, m.original.acc - 0.2);
  // And in the report JSON written with the checkpoint.
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/out500/care_report.json"));
}

TEST_P(AccuracyTest, RollingPerplexityInConversionReport) {
  CARE_REQUIRE_FIXTURES();
  // 12 KB of TinyStories text from the second half (calibration reads the
  // first half of the token stream), one document.
  std::ifstream in(
      ::care::testing::FixturePath("tinystories/tinystories_val_head.txt"),
      std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  text = text.substr(text.size() * 6 / 10, 12000);
  const std::string eval_file = dir_ + "/eval.txt";
  std::ofstream(eval_file, std::ios::binary) << text;
  ConvertOptions o = testing::SmallOptions(Model(), dir_ + "/out",
                                           Budget::KvSave(0.75), Method::kCare);
  o.device = ::care::testing::TestDevice();
  o.eval_data = eval_file;
  o.eval_seq_len = 128;
  o.eval_windows = 4;
  o.eval_rolling_stride = 64;
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->rolling_original.has_value());
  ASSERT_TRUE(r->rolling_converted.has_value());
  const RollingReport& a = *r->rolling_original;
  const RollingReport& b = *r->rolling_converted;
  std::cout << GetParam() << ": rolling token ppl " << a.token_perplexity
            << " -> " << b.token_perplexity << ", word " << a.word_perplexity
            << " -> " << b.word_perplexity << "\n";
  EXPECT_EQ(r->rolling_max_length, 128);
  EXPECT_EQ(r->rolling_stride, 64);
  EXPECT_EQ(a.documents, 1);
  EXPECT_EQ(a.bytes, 12000);
  EXPECT_EQ(a.predictions, b.predictions);
  EXPECT_EQ(a.windows, b.windows);
  EXPECT_GT(b.token_perplexity, a.token_perplexity);
  // The original's numbers are those of the library on the same document
  // (eval_reference_test checks the library against numpy).
  absl::StatusOr<io::Model> model = io::OpenModel(Model(), engine::Families());
  ASSERT_TRUE(model.ok());
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> tokenizer =
      tok::LoadTokenizer(Model());
  ASSERT_TRUE(tokenizer.ok());
  absl::StatusOr<std::vector<eval::RollingDocument>> docs =
      eval::MakeRollingDocuments({text}, **tokenizer,
                                 eval::DocumentSplit::kWhole);
  ASSERT_TRUE(docs.ok());
  eval::SequenceOptions so;
  so.engine.device = ::care::testing::TestDevice();
  absl::StatusOr<eval::RollingResult> lib =
      eval::EvaluateRolling(model->config, *model->weights, *docs,
                            {.max_length = 128, .stride = 64, .prefix = 1}, so);
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_EQ(lib->predictions, a.predictions);
  EXPECT_NEAR(lib->token_perplexity, a.token_perplexity,
              1e-9 * a.token_perplexity);
  EXPECT_NEAR(lib->word_perplexity, a.word_perplexity,
              1e-9 * a.word_perplexity);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, AccuracyTest,
                         ::testing::Values("stories260K-hf", "tinygqa-hf"),
                         [](const auto& info) {
                           return info.param == "tinygqa-hf"
                                      ? std::string("tinygqa")
                                      : std::string("stories260K");
                         });

}  // namespace
}  // namespace care::convert
