// Shared helpers of the conversion pipeline tests.
#ifndef CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_
#define CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/pipeline.h"
#include "care/engine/engine.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"

namespace care::convert::testing {

// The tok512 id stream of the TinyStories text (stories260K and tinygqa
// share the tokenizer).
std::string TokenFile();
const std::vector<int32_t>& TokenStream();

// The path of fixture `name` (support/fixtures.h).
std::string Fixture(const std::string& name);

// The JSON file at `path`; a discarded value when missing or malformed.
nlohmann::json ReadJson(const std::string& path);

// Small, fast calibration: 64 windows x 32 tokens, no evaluation.
ConvertOptions SmallOptions(const std::string& model, const std::string& out,
                            Budget budget, Method method);

// Evaluation on `windows` windows of `seq_len` tokens of the token
// stream's last 10 %.
void AddEvaluation(ConvertOptions& o, int64_t seq_len, int64_t windows);

// The perplexity of the checkpoint in `out`, reloaded by the engine, on the
// evaluation windows of `r` (as AddEvaluation set them).
absl::StatusOr<engine::PerplexityResult> ReloadedPerplexity(
    const std::string& out, const ConversionReport& r, int64_t seq_len,
    int64_t windows);

// ConvertModel(o), cancelled once progress reaches `step` of `stage`; its
// status (Cancelled when the stage got that far).
absl::Status ConvertUntil(const ConvertOptions& o, const std::string& stage,
                          int64_t step);

// A fixture with a fresh temporary dir_ (named after `prefix`) and a work
// dir work_ = dir_/work inside it (not created); the fixtures required;
// dir_ removed unless the test failed (kept to inspect).
class WorkDirTest : public ::testing::Test {
 protected:
  explicit WorkDirTest(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override;
  void TearDown() override;

  std::string dir_, work_;

 private:
  std::string prefix_;
};

// `windows` windows of `seq_len` tokens from the start of the stream.
engine::TokenWindows FirstWindows(int64_t windows, int64_t seq_len);

// Logits [tokens, vocab] of the model in `dir` on `windows` (the
// checkpoint's own projectors: dense, or latent when converted).
MatrixRM ModelLogits(const std::string& dir,
                     const engine::TokenWindows& windows);

// Every file of output directory `a` but the reports (which hold timings)
// has the same bytes in `b`; at least config.json and the weights.
void ExpectSameOutput(const std::string& a, const std::string& b);

}  // namespace care::convert::testing

#endif  // CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_
