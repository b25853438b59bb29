// Calibration sampler and evaluation chunker: the specified PRNG, golden
// windows, range handling and calibration/evaluation disjointness.
#include "care/data/windows.h"

#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace care::data {
namespace {

using ::testing::HasSubstr;

std::vector<int64_t> Starts(const std::vector<Window>& w) {
  std::vector<int64_t> s;
  for (const Window& x : w) s.push_back(x.start);
  return s;
}

TEST(SplitMix64Test, MatchesPublishedSequence) {
  // splitmix64 from seed 0 (Vigna's reference implementation).
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(rng.Next(), 0x06C45D188009454Full);
}

TEST(SamplerTest, GoldenWindows) {
  // Computed once by an independent Python transcription of the documented
  // algorithm (splitmix64 + rejection sampling); must never change.
  auto w = SampleCalibrationWindows(10000, 6, 128, 42);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(Starts(*w),
            (std::vector<int64_t>{6931, 8650, 2304, 4500, 1951, 3768}));
  for (const Window& x : *w) EXPECT_EQ(x.length, 128);
  auto r = SampleCalibrationWindows(393012, 4, 256, 7, {1000, 200000});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Starts(*r), (std::vector<int64_t>{134092, 62364, 197431, 182508}));
}

TEST(SamplerTest, DeterministicAndInsideRange) {
  const TokenRange range{500, 4000};
  auto a = SampleCalibrationWindows(5000, 200, 64, 9, range);
  auto b = SampleCalibrationWindows(5000, 200, 64, 9, range);
  auto c = SampleCalibrationWindows(5000, 200, 64, 10, range);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(Starts(*a), Starts(*b));
  EXPECT_NE(Starts(*a), Starts(*c));
  for (const Window& x : *a) {
    EXPECT_GE(x.start, 500);
    EXPECT_LE(x.start + x.length, 4000);
  }
  // A range exactly one window long has one possible start.
  auto exact = SampleCalibrationWindows(5000, 3, 100, 1, {200, 300});
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(Starts(*exact), (std::vector<int64_t>{200, 200, 200}));
}

TEST(ChunkerTest, ConsecutiveWindowsFromRangeStart) {
  auto all = ChunkEvaluationWindows(1000, 300, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(Starts(*all), (std::vector<int64_t>{0, 300, 600}));
  auto capped = ChunkEvaluationWindows(1000, 300, 2, {100, -1});
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(Starts(*capped), (std::vector<int64_t>{100, 400}));
}

TEST(RangesTest, CalibrationAndEvaluationAreDisjoint) {
  const int64_t n = 100000;
  auto calib_range = RangeFromFractions(n, 0.0, 0.5);
  auto eval_range = RangeFromFractions(n, 0.5, 1.0);
  ASSERT_TRUE(calib_range.ok() && eval_range.ok());
  EXPECT_EQ(calib_range->end, 50000);
  EXPECT_EQ(eval_range->begin, 50000);
  auto calib = SampleCalibrationWindows(n, 500, 256, 3, *calib_range);
  auto eval = ChunkEvaluationWindows(n, 256, 0, *eval_range);
  ASSERT_TRUE(calib.ok() && eval.ok());
  EXPECT_EQ(eval->size(), 195u);  // floor(50000 / 256).
  std::set<int64_t> calib_tokens;
  for (const Window& w : *calib) {
    for (int64_t t = w.start; t < w.start + w.length; ++t) {
      calib_tokens.insert(t);
    }
  }
  for (const Window& w : *eval) {
    for (int64_t t = w.start; t < w.start + w.length; ++t) {
      ASSERT_EQ(calib_tokens.count(t), 0u) << "token " << t;
    }
  }
}

TEST(WindowsTest, Materialize) {
  std::vector<int32_t> stream(20);
  for (int i = 0; i < 20; ++i) stream[i] = 100 + i;
  auto m = MaterializeWindows(stream, {{2, 3}, {10, 3}});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<int32_t>{102, 103, 104, 110, 111, 112}));
  EXPECT_FALSE(MaterializeWindows(stream, {{18, 3}}).ok());
  EXPECT_FALSE(MaterializeWindows(stream, {{0, 3}, {4, 2}}).ok());
}

TEST(WindowsTest, Errors) {
  auto big = SampleCalibrationWindows(100, 1, 101, 0);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(std::string(big.status().message()),
              HasSubstr("window of 101 tokens is larger"));
  EXPECT_FALSE(ChunkEvaluationWindows(100, 60, 0, {50, 100}).ok());
  EXPECT_FALSE(SampleCalibrationWindows(100, 0, 10, 0).ok());
  EXPECT_FALSE(SampleCalibrationWindows(100, 1, 0, 0).ok());
  EXPECT_FALSE(SampleCalibrationWindows(0, 1, 1, 0).ok());
  EXPECT_FALSE(ChunkEvaluationWindows(100, 10, -1).ok());
  EXPECT_FALSE(ResolveRange(100, {50, 40}).ok());
  EXPECT_FALSE(ResolveRange(100, {0, 101}).ok());
  EXPECT_FALSE(ResolveRange(100, {-1, 10}).ok());
  EXPECT_FALSE(RangeFromFractions(100, 0.5, 0.5).ok());
  EXPECT_FALSE(RangeFromFractions(100, 0.0, 1.5).ok());
}

}  // namespace
}  // namespace care::data
