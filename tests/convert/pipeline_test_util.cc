#include "convert/pipeline_test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/status_macros.h"
#include "care/data/dataset.h"
#include "care/engine/families.h"
#include "support/fixtures.h"

namespace care::convert::testing {

std::string TokenFile() {
  return ::care::testing::FixturePath(
      "stories260K_reference/tinystories_val_head.tok512.u16");
}

std::string Fixture(const std::string& name) {
  return ::care::testing::FixturePath(name);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

const std::vector<int32_t>& TokenStream() {
  static const auto* stream = [] {
    auto s = data::ReadTokenFile(TokenFile());
    EXPECT_TRUE(s.ok()) << s.status();
    return new std::vector<int32_t>(s.ok() ? *s : std::vector<int32_t>());
  }();
  return *stream;
}

ConvertOptions SmallOptions(const std::string& model, const std::string& out,
                            Budget budget, Method method) {
  ConvertOptions o;
  o.model = model;
  o.output_dir = out;
  o.budget = budget;
  o.method = method;
  o.calib_data = TokenFile();
  o.calib_samples = 64;
  o.calib_seq_len = 32;
  o.heldout_windows = 16;
  o.calib_range = StreamFraction{0, 0.5};
  return o;
}

void AddEvaluation(ConvertOptions& o, int64_t seq_len, int64_t windows) {
  o.eval_data = TokenFile();
  o.eval_range = StreamFraction{0.9, 1};
  o.eval_seq_len = seq_len;
  o.eval_windows = windows;
}

absl::StatusOr<engine::PerplexityResult> ReloadedPerplexity(
    const std::string& out, const ConversionReport& r, int64_t seq_len,
    int64_t windows) {
  std::vector<int32_t> stream = TokenStream();
  stream.resize(r.eval_range_end);
  CARE_ASSIGN_OR_RETURN(
      const engine::EvalWindows w,
      engine::MakeEvalWindows(stream, {.seq_len = seq_len,
                                       .max_windows = windows,
                                       .start = r.eval_range_begin,
                                       .bos = std::nullopt}));
  CARE_ASSIGN_OR_RETURN(io::Model model,
                        io::OpenModel(out, engine::Families()));
  return engine::EvaluatePerplexity(model.config, *model.weights, w);
}

absl::Status ConvertUntil(const ConvertOptions& o, const std::string& stage,
                          int64_t step) {
  bool stop = false;
  return ConvertModel(
             o,
             [&](const ConvertProgress& p) {
               if (p.stage == stage && p.step >= step) stop = true;
             },
             [&] { return stop; })
      .status();
}

void WorkDirTest::SetUp() {
  CARE_REQUIRE_FIXTURES();
  dir_ = ::care::testing::MakeTempDir(prefix_);
  work_ = dir_ + "/work";
}

void WorkDirTest::TearDown() {
  if (!HasFailure() && !dir_.empty()) std::filesystem::remove_all(dir_);
}

engine::TokenWindows FirstWindows(int64_t windows, int64_t seq_len) {
  engine::TokenWindows w;
  w.num_windows = windows;
  w.seq_len = seq_len;
  const std::vector<int32_t>& s = TokenStream();
  w.ids.assign(s.begin(), s.begin() + windows * seq_len);
  return w;
}

MatrixRM ModelLogits(const std::string& dir,
                     const engine::TokenWindows& windows) {
  auto model = io::OpenModel(dir, ::care::engine::Families());
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  auto fwd =
      engine::LayerwiseForward::Create(model->config, *model->weights, windows);
  EXPECT_TRUE(fwd.ok()) << fwd.status();
  if (!fwd.ok()) return {};
  const absl::Status st =
      (*fwd)->RunLayers(model->config.num_hidden_layers, {});
  EXPECT_TRUE(st.ok()) << st;
  auto logits = (*fwd)->Logits();
  EXPECT_TRUE(logits.ok()) << logits.status();
  return logits.ok() ? *logits : MatrixRM();
}

void ExpectSameOutput(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  auto bytes = [](const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  int compared = 0;
  for (const auto& entry : fs::directory_iterator(a)) {
    const std::string name = entry.path().filename().string();
    if (name == "care_report.json" || name == "care_report.html") continue;
    EXPECT_EQ(bytes(entry.path()), bytes(fs::path(b) / name)) << name;
    ++compared;
  }
  EXPECT_GE(compared, 2);
}

}  // namespace care::convert::testing
