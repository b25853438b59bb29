// Table of corrupted safetensors files and checkpoint directories: each
// yields its own error code and message, and nothing crashes. Files are
// built byte by byte here (small synthetic headers) and, for the
// fixture-based rows, derived from stories260K copies in a temp dir.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/engine/families.h"
#include "care/io/checkpoint.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/file_util.h"
#include "care/io/model.h"
#include "care/io/safetensors.h"
#include "care/io/tensor_names.h"
#include "support/fixtures.h"

namespace care::io {
namespace {

namespace fs = std::filesystem;

// 8-byte little-endian length + header + data.
std::string File(uint64_t header_len, const std::string& header,
                 size_t data_bytes) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &header_len, 8);
  out += header;
  out.append(data_bytes, '\x01');
  return out;
}
std::string File(const std::string& header, size_t data_bytes) {
  return File(header.size(), header, data_bytes);
}

struct Case {
  const char* label;
  std::string bytes;
  absl::StatusCode code;
  const char* message;  // A fragment the error must contain.
};

std::vector<Case> Cases() {
  const std::string ok_a =
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  return {
      {"empty file", "", absl::StatusCode::kDataLoss, "truncated"},
      {"truncated length", std::string("\x10\x00\x00", 3),
       absl::StatusCode::kDataLoss, "shorter than the 8-byte header length"},
      {"header length past EOF", File(4096, "{}", 0),
       absl::StatusCode::kDataLoss, "runs past the end of the file"},
      {"absurd header length", File(uint64_t{1} << 62, "{}", 0),
       absl::StatusCode::kDataLoss, "exceeds the limit"},
      {"bad JSON", File(R"({"a":{"dtype":"F32",)", 0),
       absl::StatusCode::kDataLoss, "not valid JSON"},
      {"JSON array", File("[1,2]", 0), absl::StatusCode::kDataLoss,
       "not a JSON object"},
      {"unknown dtype",
       File(R"({"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})", 2),
       absl::StatusCode::kInvalidArgument, "unknown dtype 'Q4_K'"},
      {"missing shape",
       File(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4),
       absl::StatusCode::kDataLoss, "missing 'shape'"},
      {"extra key",
       File(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})",
            4),
       absl::StatusCode::kDataLoss, "unexpected key 'x'"},
      {"negative dim",
       File(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       absl::StatusCode::kDataLoss, "non-negative integers"},
      {"shape/bytes mismatch",
       File(R"({"a":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}})", 16),
       absl::StatusCode::kDataLoss, "needs 24 bytes but data_offsets [0, 16]"},
      {"overflowing shape",
       File(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],)"
            R"("data_offsets":[0,16]}})",
            16),
       absl::StatusCode::kDataLoss, "overflowing"},
      {"begin after end",
       File(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
       absl::StatusCode::kDataLoss, "begin > end"},
      {"offsets out of range", File(absl::StrCat("{", ok_a, "}"), 12),
       absl::StatusCode::kDataLoss, "end past the data section of 12 bytes"},
      {"overlapping offsets",
       File(absl::StrCat(
                "{", ok_a,
                R"(,"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}})"),
            16),
       absl::StatusCode::kDataLoss, "overlap"},
      {"metadata not strings",
       File(absl::StrCat(R"({"__metadata__":{"n":1},)", ok_a, "}"), 16),
       absl::StatusCode::kDataLoss, "__metadata__ value of 'n'"},
  };
}

class CorruptTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = care::testing::MakeTempDir("care-corrupt"); }
  void TearDown() override {
    if (!HasFailure()) RemoveTree(dir_);
  }
  std::string dir_;
};

TEST_F(CorruptTest, EachCorruptionHasItsError) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.label);
    const std::string path = dir_ + "/x.safetensors";
    ASSERT_TRUE(WriteFileSynced(path, c.bytes).ok());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
        SafetensorsFile::Open(path);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), c.code) << f.status();
    EXPECT_NE(f.status().message().find(c.message), std::string::npos)
        << f.status();
    EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  }
}

TEST_F(CorruptTest, ValidSyntheticFileAndMetadata) {
  const std::string path = dir_ + "/ok.safetensors";
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("e":{"dtype":"F16","shape":[0,5],"data_offsets":[16,16]}})";
  ASSERT_TRUE(WriteFileSynced(path, File(header, 16)).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->header().metadata.at("format"), "pt");
  EXPECT_EQ((*f)->LoadF32("e")->data.size(), 0u);
  EXPECT_EQ((*f)->LoadF32("a")->shape, (std::vector<int64_t>{2, 2}));
}

// Copies the sharded fixture into the temp dir so it can be damaged.
std::string CopyFixture(const std::string& dir, const char* name) {
  const std::string dst = dir + "/" + name;
  fs::copy(care::testing::FixturePath(name), dst);
  for (const auto& e : fs::directory_iterator(dst)) {
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  }
  fs::permissions(dst, fs::perms::owner_all, fs::perm_options::add);
  return dst;
}

TEST_F(CorruptTest, DamagedCheckpointDirectories) {
  CARE_REQUIRE_FIXTURES();
  const std::string d = CopyFixture(dir_, "stories260K-hf-sharded");
  const std::string shard2 = d + "/model-00002-of-00002.safetensors";
  const std::string index = d + "/model.safetensors.index.json";
  const std::string index_text = ReadFileToString(index).value();

  // Truncated shard: a real file cut in half.
  std::string bytes = ReadFileToString(shard2).value();
  ASSERT_TRUE(WriteFileSynced(shard2, bytes.substr(0, bytes.size() / 2)).ok());
  auto c = Checkpoint::Open(d);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("past the data section"),
            std::string::npos)
      << c.status();

  // Missing shard.
  fs::remove(shard2);
  c = Checkpoint::Open(d);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("missing shard " + shard2),
            std::string::npos)
      << c.status();
  ASSERT_TRUE(WriteFileSynced(shard2, bytes).ok());
  ASSERT_TRUE(Checkpoint::Open(d).ok());

  // The index places a tensor in a shard that lacks it.
  nlohmann::json j = nlohmann::json::parse(index_text);
  j["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  ASSERT_TRUE(WriteFileSynced(index, j.dump()).ok());
  c = Checkpoint::Open(d);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("'model.norm.weight'"),
            std::string::npos);

  // A shard name escaping the directory.
  j = nlohmann::json::parse(index_text);
  j["weight_map"]["model.norm.weight"] = "../x.safetensors";
  ASSERT_TRUE(WriteFileSynced(index, j.dump()).ok());
  EXPECT_EQ(Checkpoint::Open(d).status().code(), absl::StatusCode::kDataLoss);

  // Bad index JSON.
  ASSERT_TRUE(WriteFileSynced(index, "{\"weight_map\": ").ok());
  c = Checkpoint::Open(d);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find(index), std::string::npos);
}

TEST_F(CorruptTest, MissingAndMisshapedTensorsNameTheTensor) {
  CARE_REQUIRE_FIXTURES();
  auto src = OpenModel(care::testing::FixturePath("stories260K-hf-bf16"),
                       ::care::engine::Families());
  ASSERT_TRUE(src.ok());
  auto write_variant = [&](const std::string& dest, const std::string& skip,
                           const std::string& reshape) {
    auto w = CheckpointWriter::Create(dest);
    ASSERT_TRUE(w.ok());
    for (const std::string& n : src->weights->Names()) {
      if (n == skip) continue;
      auto raw = src->weights->Raw(n);
      std::vector<int64_t> shape = raw->shape;
      if (n == reshape) shape = {shape[1], shape[0]};  // Transposed shape.
      ASSERT_TRUE((*w)->AddTensorRaw(n, raw->dtype, shape, raw->bytes).ok());
    }
    ASSERT_TRUE((*w)->SetConfig(src->config.raw).ok());
    ASSERT_TRUE((*w)->Commit().ok());
  };
  write_variant(dir_ + "/missing", names::VProj(3), "");
  absl::StatusOr<Model> m =
      OpenModel(dir_ + "/missing", ::care::engine::Families());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find(
                "'model.layers.3.self_attn.v_proj.weight' is missing"),
            std::string::npos)
      << m.status();
  EXPECT_NE(m.status().message().find("[32, 64]"), std::string::npos);

  write_variant(dir_ + "/misshaped", "", names::KProj(1));
  m = OpenModel(dir_ + "/misshaped", ::care::engine::Families());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find(
                "'model.layers.1.self_attn.k_proj.weight' in " + dir_ +
                "/misshaped/model.safetensors has shape [64, 32], expected "
                "[32, 64]"),
            std::string::npos)
      << m.status();
}

}  // namespace
}  // namespace care::io
