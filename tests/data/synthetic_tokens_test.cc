#include "care/data/synthetic_tokens.h"

#include <filesystem>
#include <map>

#include "care/data/dataset.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::data {
namespace {

TEST(SyntheticTokensTest, DeterministicInRangeAndStructured) {
  SyntheticTokenOptions o{.vocab_size = 1000, .count = 200000, .seed = 7};
  auto a = SyntheticTokenStream(o);
  auto b = SyntheticTokenStream(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  o.seed = 8;
  auto c = SyntheticTokenStream(o);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);

  std::map<int32_t, int64_t> unigram;
  std::map<std::pair<int32_t, int32_t>, int64_t> bigram;
  for (size_t i = 0; i < a->size(); ++i) {
    ASSERT_GE((*a)[i], 0);
    ASSERT_LT((*a)[i], 1000);
    ++unigram[(*a)[i]];
    if (i > 0) ++bigram[{(*a)[i - 1], (*a)[i]}];
  }
  // Bigram structure: the best successor of a frequent token takes far more
  // than the uniform 1/1000 of its transitions (about 0.75/4 by design).
  int32_t frequent = 0;
  for (const auto& [t, n] : unigram) {
    if (n > unigram[frequent]) frequent = t;
  }
  int64_t out = 0, best = 0;
  for (const auto& [pair, n] : bigram) {
    if (pair.first != frequent) continue;
    out += n;
    best = std::max(best, n);
  }
  ASSERT_GT(out, 1000);
  EXPECT_GT(static_cast<double>(best) / out, 0.1);
  // Zipf-like unigrams: the most frequent token is far above uniform.
  EXPECT_GT(unigram[frequent], 5 * 200);
}

TEST(SyntheticTokensTest, RejectsBadOptions) {
  EXPECT_FALSE(SyntheticTokenStream({.vocab_size = 1, .count = 10}).ok());
  EXPECT_FALSE(SyntheticTokenStream({.vocab_size = 10, .count = 0}).ok());
  EXPECT_FALSE(SyntheticTokenStream(
                   {.vocab_size = 10, .count = 5, .successor_prob = 1.5})
                   .ok());
}

TEST(SyntheticTokensTest, U32FileRoundTripsThroughTheReader) {
  auto ids = SyntheticTokenStream({.vocab_size = 70000, .count = 5000});
  ASSERT_TRUE(ids.ok());
  const std::string dir = care::testing::MakeTempDir("synth-tokens");
  const std::string path = dir + "/t.u32";
  ASSERT_TRUE(WriteTokenFileU32(path, *ids).ok());
  auto back = LoadTokenStream(path, nullptr);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *ids);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace care::data
