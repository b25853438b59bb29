#include "convert/pipeline_test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "care/data/dataset.h"
#include "care/engine/families.h"
#include "support/fixtures.h"

namespace care::convert::testing {

std::string TokenFile() {
  return ::care::testing::FixturePath(
      "stories260K_reference/tinystories_val_head.tok512.u16");
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
