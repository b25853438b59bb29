// `care-worker convert` as a process with the flags of the spec fields:
// --sequential, --calib-text-field / --eval-text-field, --eval-bos, --dtype.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "care/io/checkpoint.h"
#include "support/fixtures.h"

namespace {

using ::care::testing::FixturePath;
using ::care::testing::RunCareWorker;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

class ConvertFieldsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::care::testing::MakeTempDir("spec_fields_cli");
    // 300 TinyStories lines as JSONL documents under "story".
    std::ifstream in(FixturePath("tinystories/tinystories_val_head.txt"));
    std::ofstream out(dir_ + "/calib.jsonl");
    int docs = 0;
    for (std::string line; docs < 300 && std::getline(in, line);) {
      if (line.empty()) continue;
      out << nlohmann::json{{"story", line}}.dump() << "\n";
      ++docs;
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(ConvertFieldsCliTest, AllFieldFlagsTogether) {
  CARE_REQUIRE_FIXTURES();
  const auto r = RunCareWorker(absl::StrCat(
      "convert --model ", FixturePath("stories260K-hf"), " --out ", dir_,
      "/out --kv-save 0.5 --calib ", dir_,
      "/calib.jsonl --calib-text-field story --calib-samples 32 --sequential"
      " --eval ",
      FixturePath("stories260K_reference/tinystories_val_head.tok512.u16"),
      " --eval-seq-len 256 --eval-windows 8 --eval-bos --dtype bf16"
      " --quiet --report ",
      dir_, "/report.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json report = ReadJson(dir_ + "/report.json");
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["sequential"], true);
  // stories260K_reference/SOURCE.md, P2 with 8 windows: 2,040 predictions,
  // mean NLL 1.471694 (float64; float32 within ~1e-4).
  EXPECT_EQ(report["original"]["predictions"], 2040);
  EXPECT_NEAR(report["original"]["mean_nll"].get<double>(), 1.471694, 1e-4);
  auto out = care::io::Checkpoint::Open(dir_ + "/out");
  ASSERT_TRUE(out.ok()) << out.status();
  for (const std::string& name : (*out)->Names()) {
    EXPECT_EQ(*(*out)->TensorDType(name), care::io::DType::kBF16) << name;
  }
  EXPECT_EQ(ReadJson(dir_ + "/out/config.json")["torch_dtype"], "bfloat16");
}

TEST_F(ConvertFieldsCliTest, BadFieldValuesAreUsageErrors) {
  CARE_REQUIRE_FIXTURES();
  const std::string base =
      absl::StrCat("convert --model ", FixturePath("stories260K-hf"), " --out ",
                   dir_, "/out --kv-save 0.5 --calib ", dir_, "/calib.jsonl");
  const auto dtype = RunCareWorker(base + " --dtype f8");
  EXPECT_EQ(dtype.exit_code, 2) << dtype.output;
  EXPECT_NE(dtype.output.find("expected source, f32, f16 or bf16"),
            std::string::npos)
      << dtype.output;
  // The default field "text" is absent from these documents.
  const auto field = RunCareWorker(base);
  EXPECT_EQ(field.exit_code, 2) << field.output;
  EXPECT_NE(field.output.find(dir_ + "/calib.jsonl:1: missing string field "
                                     "'text'"),
            std::string::npos)
      << field.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/out"));
}

}  // namespace
