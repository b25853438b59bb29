// CheckpointWriter: a write/read round trip is bit-exact (raw copies and F32),
// BF16 writes read back as the RNE rounding, shards split at the configured
// size with a consistent index, auxiliary files are copied and weight files
// are not, and an uncommitted writer leaves nothing that looks complete.
#include "care/io/checkpoint_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/engine/families.h"
#include "care/io/checkpoint.h"
#include "care/io/file_util.h"
#include "care/io/model.h"
#include "care/io/model_config.h"
#include "support/fixtures.h"

namespace care::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t;
  t.shape = std::move(shape);
  t.data.resize(t.numel());
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& v : t.data) v = dist(rng);
  return t;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class CheckpointWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = care::testing::MakeTempDir("care-writer");
    ASSERT_FALSE(root_.empty());
  }
  void TearDown() override {
    if (!HasFailure()) RemoveTree(root_);
  }
  std::string root_;
};

TEST_F(CheckpointWriterTest, F32RoundTripIsBitExactAndShardsSplit) {
  const std::string dest = root_ + "/out";
  WriterOptions opt;
  opt.max_shard_bytes = 3000;  // Forces several shards for ~7 KB of data.
  auto w = CheckpointWriter::Create(dest, opt);
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<Tensor> tensors;
  for (int i = 0; i < 6; ++i) {
    tensors.push_back(RandomTensor({16, 16 + i}, i));  // ~1-1.3 KB each.
    ASSERT_TRUE(
        (*w)->AddTensorF32(absl::StrCat("t", i), tensors.back(), DType::kF32)
            .ok());
  }
  Tensor big = RandomTensor({1000}, 99);  // 4000 B > max: a shard alone.
  ASSERT_TRUE((*w)->AddTensorF32("big", big, DType::kF32).ok());
  ASSERT_TRUE((*w)->SetConfig(json{{"model_type", "llama"}}).ok());
  EXPECT_FALSE(fs::exists(dest));  // Nothing visible before Commit.
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_FALSE(fs::exists((*w)->temp_dir()));

  auto r = Checkpoint::Open(dest);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> files = (*r)->Files();
  ASSERT_GE(files.size(), 3u);
  EXPECT_EQ(files.front(),
            absl::StrCat("model-00001-of-0000", files.size(), ".safetensors"));
  for (int i = 0; i < 6; ++i) {
    auto t = (*r)->LoadF32(absl::StrCat("t", i));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->shape, tensors[i].shape);
    EXPECT_EQ(
        std::memcmp(t->data.data(), tensors[i].data.data(), t->data.size() * 4),
        0);
  }
  EXPECT_EQ((*r)->LoadF32("big")->data, big.data);
  // The index's total_size is the sum of tensor bytes, as transformers has it.
  auto index = ReadFileToString(dest + "/model.safetensors.index.json");
  ASSERT_TRUE(index.ok());
  json j = json::parse(*index);
  EXPECT_EQ(j["metadata"]["total_size"].get<uint64_t>(), (*r)->TotalBytes());
  // No stray temporary files remain.
  for (const std::string& f : ListDir(dest)) {
    EXPECT_NE(f[0], '.') << f;
  }
  for (const std::string& f : ListDir(root_)) EXPECT_EQ(f, "out");
}

TEST_F(CheckpointWriterTest, ReservedHeaderWritesDataInPlace) {
  Tensor a = RandomTensor({64, 16}, 3);  // 4096 bytes of F32.
  Tensor b = RandomTensor({7}, 4);       // 28 bytes.
  // 4 KiB holds the header: data is written once, at offset 4096. 64 bytes
  // does not: the writer falls back to staging + copy. Both read back.
  for (int64_t reserve : {4096, 64, 0}) {
    SCOPED_TRACE(reserve);
    const std::string dest = absl::StrCat(root_, "/r", reserve);
    WriterOptions opt;
    opt.header_reserve_bytes = reserve;
    auto w = CheckpointWriter::Create(dest, opt);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddTensorF32("a", a, DType::kF32).ok());
    ASSERT_TRUE((*w)->AddTensorF32("b", b, DType::kF32).ok());
    ASSERT_TRUE((*w)->SetConfig(json::object()).ok());
    ASSERT_TRUE((*w)->Commit().ok());
    auto r = Checkpoint::Open(dest);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->LoadF32("a")->data, a.data);
    EXPECT_EQ((*r)->LoadF32("b")->data, b.data);
    const uint64_t size = fs::file_size(dest + "/model.safetensors");
    if (reserve == 4096) {
      EXPECT_EQ(size, 4096u + 4096 + 28);
    } else {
      EXPECT_LT(size, 4096u + 4096 + 28);
    }
    for (const std::string& f : ListDir(dest)) EXPECT_NE(f[0], '.') << f;
  }
}

TEST_F(CheckpointWriterTest, Bf16AndF16Writes) {
  const std::string dest = root_ + "/half";
  auto w = CheckpointWriter::Create(dest);
  ASSERT_TRUE(w.ok());
  Tensor t = RandomTensor({33, 7}, 5);
  ASSERT_TRUE((*w)->AddTensorF32("b", t, DType::kBF16).ok());
  ASSERT_TRUE((*w)->AddTensorF32("h", t, DType::kF16).ok());
  ASSERT_TRUE((*w)->SetConfig(json::object()).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  auto r = Checkpoint::Open(dest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->Files(), std::vector<std::string>{"model.safetensors"});
  auto b = (*r)->LoadF32("b");
  auto h = (*r)->LoadF32("h");
  ASSERT_TRUE(b.ok() && h.ok());
  for (size_t i = 0; i < t.data.size(); ++i) {
    ASSERT_EQ(b->data[i], Bf16BitsToF32(F32ToBf16Bits(t.data[i])));
    ASSERT_EQ(h->data[i], F16BitsToF32(F32ToF16Bits(t.data[i])));
  }
  EXPECT_EQ((*r)->TensorDType("b").value(), DType::kBF16);
  EXPECT_EQ((*r)->TensorDType("h").value(), DType::kF16);
}

TEST_F(CheckpointWriterTest, CopiesFixtureBitExactWithAuxFiles) {
  CARE_REQUIRE_FIXTURES();
  for (const char* name : {"stories260K-hf-bf16", "stories260K-hf-sharded"}) {
    const std::string src = care::testing::FixturePath(name);
    auto in = OpenModel(src, ::care::engine::Families());
    ASSERT_TRUE(in.ok()) << in.status();
    const std::string dest = root_ + "/" + name;
    WriterOptions opt;
    opt.max_shard_bytes = 400'000;
    auto w = CheckpointWriter::Create(dest, opt);
    ASSERT_TRUE(w.ok());
    // Alternately in-kernel from the source file and from its mapping: both
    // paths append at the shard's current offset.
    bool in_kernel = true;
    for (const std::string& t : in->weights->Names()) {
      auto raw = in->weights->Raw(t);
      ASSERT_TRUE(raw.ok());
      ASSERT_GE(raw->file.fd, 0) << t;
      const FileRange from = in_kernel ? raw->file : FileRange{};
      in_kernel = !in_kernel;
      ASSERT_TRUE(
          (*w)->AddTensorRaw(t, raw->dtype, raw->shape, raw->bytes, from).ok());
    }
    ASSERT_TRUE((*w)->SetConfig(in->config.raw).ok());
    ASSERT_TRUE((*w)->CopyAuxiliaryFiles(src).ok());
    ASSERT_TRUE((*w)->Commit().ok());

    auto out = OpenModel(dest, ::care::engine::Families());
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->weights->Names(), in->weights->Names());
    for (const std::string& t : in->weights->Names()) {
      auto a = in->weights->Raw(t);
      auto b = out->weights->Raw(t);
      ASSERT_EQ(a->dtype, b->dtype);
      ASSERT_EQ(a->shape, b->shape);
      ASSERT_EQ(a->bytes, b->bytes) << t;
    }
    EXPECT_EQ(out->config.raw, in->config.raw);
    for (const char* aux : {"tokenizer.model", "tokenizer_config.json",
                            "generation_config.json"}) {
      auto x = ReadFileToString(src + "/" + aux);
      auto y = ReadFileToString(dest + "/" + aux);
      ASSERT_TRUE(x.ok() && y.ok()) << aux;
      EXPECT_EQ(*x, *y) << aux;
    }
    EXPECT_GE(out->weights->Files().size(), 2u);  // >= 525 KB / 400 KB
  }
}

TEST_F(CheckpointWriterTest, AbandonedWriteLeavesNoDestination) {
  const std::string dest = root_ + "/abandoned";
  {
    auto w = CheckpointWriter::Create(dest);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(
        (*w)->AddTensorF32("x", RandomTensor({4}, 1), DType::kF32).ok());
    EXPECT_TRUE(fs::exists((*w)->temp_dir()));
    EXPECT_EQ(fs::path((*w)->temp_dir()).parent_path(), fs::path(root_));
  }  // Destroyed without Commit(), as if the job failed.
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_TRUE(ListDir(root_).empty());
}

TEST_F(CheckpointWriterTest, Errors) {
  const std::string dest = root_ + "/e";
  auto w = CheckpointWriter::Create(dest);
  ASSERT_TRUE(w.ok());
  Tensor t = RandomTensor({2, 3}, 1);
  ASSERT_TRUE((*w)->AddTensorF32("a", t, DType::kF32).ok());
  EXPECT_EQ((*w)->AddTensorF32("a", t, DType::kF32).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE((*w)->AddTensorF32("b", t, DType::kI32).ok());
  EXPECT_FALSE((*w)->AddTensorRaw("c", DType::kF32, {2, 3}, "short").ok());
  Tensor bad = t;
  bad.shape = {4, 4};
  EXPECT_FALSE((*w)->AddTensorF32("d", bad, DType::kF32).ok());
  EXPECT_FALSE((*w)->WriteFile("model.safetensors", "x").ok());
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*w)->SetConfig(json::object()).ok());
  ASSERT_TRUE((*w)->WriteFile("care_report.json", "{}").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_TRUE(fs::exists(dest + "/care_report.json"));
  EXPECT_EQ((*w)->Commit().code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(CheckpointWriter::Create(dest).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(CheckpointWriter::Create(root_ + "/no/such/parent").status().code(),
            absl::StatusCode::kNotFound);

  // overwrite swaps the new directory in and removes the old one.
  WriterOptions opt;
  opt.overwrite = true;
  auto w2 = CheckpointWriter::Create(dest, opt);
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE((*w2)->AddTensorF32("z", t, DType::kBF16).ok());
  ASSERT_TRUE((*w2)->SetConfig(json::object()).ok());
  ASSERT_TRUE((*w2)->Commit().ok());
  auto r = Checkpoint::Open(dest);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Names(), std::vector<std::string>{"z"});
  EXPECT_FALSE(fs::exists(dest + "/care_report.json"));
  EXPECT_EQ(ListDir(root_), std::vector<std::string>{"e"});
}

// Pages of `path` in the page cache (mincore over a mapping of it).
int64_t ResidentPages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  struct stat st;
  ::fstat(fd, &st);
  const size_t page = ::sysconf(_SC_PAGESIZE);
  const size_t pages = (st.st_size + page - 1) / page;
  void* m = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return -1;
  std::vector<unsigned char> in_core(pages);
  ::mincore(m, st.st_size, in_core.data());
  ::munmap(m, st.st_size);
  int64_t n = 0;
  for (unsigned char c : in_core) n += c & 1;
  return n;
}

TEST_F(CheckpointWriterTest, DropReplacedCacheKeepsTheOldCheckpointIntact) {
  // The checkpoint being replaced stays whole and readable until the commit;
  // only its cached pages go (checked where the filesystem can drop clean
  // pages: not tmpfs, whose pages are the file).
  const std::string dest = root_ + "/d";
  Tensor t;
  t.shape = {256, 1024};
  t.data.assign(256 * 1024, 0.5f);
  {
    auto w = CheckpointWriter::Create(dest);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddTensorF32("x", t, DType::kF32).ok());
    ASSERT_TRUE((*w)->SetConfig(json::object()).ok());
    ASSERT_TRUE((*w)->Commit().ok());  // fsynced: its pages are clean
  }
  const std::string file = dest + "/model.safetensors";
  WriterOptions opt;
  opt.overwrite = true;
  auto w2 = CheckpointWriter::Create(dest, opt);
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE((*w2)->AddTensorF32("y", t, DType::kBF16).ok());
  ASSERT_GT(ResidentPages(file), 0);
  (*w2)->DropReplacedCache();
  struct statfs fs_info;
  ASSERT_EQ(::statfs(file.c_str(), &fs_info), 0);
  if (fs_info.f_type != TMPFS_MAGIC) {
    EXPECT_EQ(ResidentPages(file), 0);
  }
  {
    auto old = Checkpoint::Open(dest);  // unchanged before the commit
    ASSERT_TRUE(old.ok());
    auto x = (*old)->LoadF32("x");
    ASSERT_TRUE(x.ok());
    EXPECT_EQ(x->data, t.data);
  }
  ASSERT_TRUE((*w2)->SetConfig(json::object()).ok());
  ASSERT_TRUE((*w2)->Commit().ok());
  auto r = Checkpoint::Open(dest);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Names(), std::vector<std::string>{"y"});
}

TEST(WeightFileTest, Classification) {
  EXPECT_TRUE(IsWeightOrConfigFile("model-00001-of-00002.safetensors"));
  EXPECT_TRUE(IsWeightOrConfigFile("model.safetensors.index.json"));
  EXPECT_TRUE(IsWeightOrConfigFile("pytorch_model.bin"));
  EXPECT_TRUE(IsWeightOrConfigFile("config.json"));
  EXPECT_FALSE(IsWeightOrConfigFile("tokenizer.json"));
  EXPECT_FALSE(IsWeightOrConfigFile("generation_config.json"));
  EXPECT_FALSE(IsWeightOrConfigFile("chat_template.jinja"));
}

}  // namespace
}  // namespace care::io
