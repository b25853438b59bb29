// The three stories260K variants (F32, BF16, F32 sharded) and tinygqa open,
// pass the shape checks, and hold the same tensors: the sharded copy is
// bit-identical to the single file, and every BF16 value is exactly the
// round-to-nearest-even rounding of the F32 value (how SOURCE.md says the
// fixture was made), which is a stronger check than a tolerance.
#include "care/io/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "care/engine/families.h"
#include "care/io/dtype.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "support/fixtures.h"

namespace care::io {
namespace {

using care::testing::FixturePath;

TEST(CheckpointTest, OpensTheThreeStoriesVariants) {
  CARE_REQUIRE_FIXTURES();
  for (const char* name :
       {"stories260K-hf", "stories260K-hf-bf16", "stories260K-hf-sharded"}) {
    absl::StatusOr<Model> m =
        OpenModel(FixturePath(name), ::care::engine::Families());
    ASSERT_TRUE(m.ok()) << name << ": " << m.status();
    EXPECT_EQ(m->config.num_hidden_layers, 5);
    EXPECT_EQ(m->config.kv_width(), 32);
    EXPECT_TRUE(m->config.tie_word_embeddings);
    // 5 layers x 9 tensors + embeddings + final norm; lm_head is tied.
    EXPECT_EQ(m->weights->Names().size(), 47u) << name;
  }
  absl::StatusOr<Model> sharded = OpenModel(
      FixturePath("stories260K-hf-sharded"), ::care::engine::Families());
  ASSERT_TRUE(sharded.ok());
  EXPECT_EQ(sharded->weights->Files(),
            (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"}));
  EXPECT_NE(sharded->weights->Location(names::UpProj(4)).find("00002"),
            std::string::npos);
}

TEST(CheckpointTest, VariantsHoldTheSameTensors) {
  CARE_REQUIRE_FIXTURES();
  auto f32 = Checkpoint::Open(FixturePath("stories260K-hf"));
  auto bf16 = Checkpoint::Open(FixturePath("stories260K-hf-bf16"));
  auto sharded = Checkpoint::Open(FixturePath("stories260K-hf-sharded"));
  ASSERT_TRUE(f32.ok() && bf16.ok() && sharded.ok());
  ASSERT_EQ((*f32)->Names(), (*bf16)->Names());
  ASSERT_EQ((*f32)->Names(), (*sharded)->Names());
  EXPECT_EQ((*f32)->TotalParameters(), (*bf16)->TotalParameters());
  EXPECT_EQ((*f32)->TotalBytes(), 2 * (*bf16)->TotalBytes());
  EXPECT_EQ((*f32)->TotalBytes(), 1040128u);  // The index's total_size.
  size_t checked = 0;
  for (const std::string& name : (*f32)->Names()) {
    absl::StatusOr<Tensor> a = (*f32)->LoadF32(name);
    absl::StatusOr<Tensor> b = (*bf16)->LoadF32(name);
    absl::StatusOr<Tensor> c = (*sharded)->LoadF32(name);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << name;
    ASSERT_EQ(a->shape, b->shape);
    ASSERT_EQ(a->shape, c->shape);
    ASSERT_EQ(std::memcmp(a->data.data(), c->data.data(),
                          a->data.size() * sizeof(float)),
              0)
        << name;
    absl::StatusOr<RawTensor> raw = (*bf16)->Raw(name);
    ASSERT_TRUE(raw.ok());
    ASSERT_EQ(raw->dtype, DType::kBF16);
    ASSERT_EQ(raw->bytes.size(), 2 * a->data.size());
    for (size_t i = 0; i < a->data.size(); ++i) {
      uint16_t stored;
      std::memcpy(&stored, raw->bytes.data() + 2 * i, 2);
      ASSERT_EQ(stored, F32ToBf16Bits(a->data[i])) << name << "[" << i << "]";
      ASSERT_EQ(b->data[i], Bf16BitsToF32(stored));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 1040128u / 4);
}

TEST(CheckpointTest, RawBytesOfF32MatchLoadF32) {
  CARE_REQUIRE_FIXTURES();
  auto ckpt = Checkpoint::Open(FixturePath("stories260K-hf"));
  ASSERT_TRUE(ckpt.ok());
  const std::string name = names::KProj(2);
  absl::StatusOr<RawTensor> raw = (*ckpt)->Raw(name);
  absl::StatusOr<Tensor> t = (*ckpt)->LoadF32(name);
  ASSERT_TRUE(raw.ok() && t.ok());
  EXPECT_EQ(raw->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(t->shape, raw->shape);
  ASSERT_EQ(raw->bytes.size(), t->data.size() * 4);
  EXPECT_EQ(std::memcmp(raw->bytes.data(), t->data.data(), raw->bytes.size()),
            0);
  EXPECT_EQ((*ckpt)->TensorDType(name).value(), DType::kF32);
  EXPECT_EQ((*ckpt)->LoadF32("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*ckpt)->Shape("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, TinyGqaUntiedHead) {
  CARE_REQUIRE_FIXTURES();
  absl::StatusOr<Model> m =
      OpenModel(FixturePath("tinygqa-hf"), ::care::engine::Families());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->config.tie_word_embeddings);
  EXPECT_EQ(m->config.head_dim, 32);
  EXPECT_EQ(m->config.kv_width(), 64);
  EXPECT_EQ(m->weights->Shape(names::LmHead()).value(),
            (std::vector<int64_t>{512, 192}));
}

TEST(CheckpointTest, MissingDirectoryAndWeights) {
  CARE_REQUIRE_FIXTURES();
  absl::StatusOr<Model> m =
      OpenModel("/nonexistent/model", ::care::engine::Families());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  // A directory with config.json but no weights.
  auto c = Checkpoint::Open(FixturePath("stories260K"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("model.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace care::io
