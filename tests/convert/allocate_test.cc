#include "care/convert/allocate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace care::convert {
namespace {

// stories260K's shape: 5 layers, g·d_h = 32.
constexpr ModelShape kShape{.layers = 5, .kv_width = 32, .max_rank = 32};

// Power-law spectra with a different decay per layer and matrix, so the
// greedy allocators have something to choose between.
LayerSpectra Spectra(const ModelShape& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> decay(0.3, 2.5), scale(0.5, 20);
  LayerSpectra s;
  for (int64_t l = 0; l < shape.layers; ++l) {
    for (auto* v : {&s.k, &s.v}) {
      const double p = decay(rng), a = scale(rng);
      Eigen::VectorXd sigma(shape.max_rank);
      for (int64_t i = 0; i < shape.max_rank; ++i) {
        sigma(i) = a * std::pow(i + 1.0, -p);
      }
      v->push_back(sigma);
    }
  }
  return s;
}

void ExpectBounds(const Allocation& a, const ModelShape& shape) {
  ASSERT_EQ(static_cast<int64_t>(a.rank_k.size()), shape.layers);
  ASSERT_EQ(static_cast<int64_t>(a.rank_v.size()), shape.layers);
  for (int64_t l = 0; l < shape.layers; ++l) {
    EXPECT_GE(a.rank_k[l], 1) << a.name;
    EXPECT_GE(a.rank_v[l], 1) << a.name;
    EXPECT_LE(a.rank_k[l], shape.max_rank) << a.name;
    EXPECT_LE(a.rank_v[l], shape.max_rank) << a.name;
  }
}

TEST(BudgetTest, TotalWidthAndAllowedRange) {
  EXPECT_EQ(*TotalLatentWidth(Budget::KvSave(0), kShape), 320);
  EXPECT_EQ(*TotalLatentWidth(Budget::KvSave(0.5), kShape), 160);
  EXPECT_EQ(*TotalLatentWidth(Budget::KvSave(0.75), kShape), 80);
  EXPECT_EQ(*TotalLatentWidth(Budget::KvSave(0.875), kShape), 40);
  // 0.3 is not exact in binary: 0.7·320 = 224 must not round down to 223.
  EXPECT_EQ(*TotalLatentWidth(Budget::KvSave(0.3), kShape), 224);
  EXPECT_EQ(*TotalLatentWidth(Budget::Rank(8), kShape), 80);
  for (double f : {1.0, -0.1, 0.99, 1.5, static_cast<double>(NAN)}) {
    const absl::Status s = TotalLatentWidth(Budget::KvSave(f), kShape).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << f;
    EXPECT_NE(s.message().find("allowed 0 <= F <= 0.96875"), std::string::npos)
        << s;
  }
  EXPECT_TRUE(TotalLatentWidth(Budget::KvSave(0.96875), kShape).ok());
  for (int64_t r : {0, -1, 33}) {
    const absl::Status s = TotalLatentWidth(Budget::Rank(r), kShape).status();
    EXPECT_NE(s.message().find("allowed 1 .. 32"), std::string::npos) << s;
  }
}

TEST(AllocateTest, UniformGivesEveryMatrixTheSameRank) {
  const Allocation a = *AllocateUniform(80, kShape);
  EXPECT_EQ(a.rank_k, std::vector<int64_t>(5, 8));
  EXPECT_EQ(a.rank_v, std::vector<int64_t>(5, 8));
  // 85 is not divisible by 2L: the remainder stays unused (never over).
  EXPECT_EQ(AllocateUniform(85, kShape)->Total(), 80);
  EXPECT_FALSE(AllocateUniform(9, kShape).ok());
  EXPECT_FALSE(AllocateUniform(321, kShape).ok());
}

TEST(AllocateTest, GreedyAllocatorsMeetTheBudgetExactlyWithinBounds) {
  const LayerSpectra s = Spectra(kShape, 1);
  for (int64_t total = 10; total <= 320; ++total) {
    absl::StatusOr<std::vector<Allocation>> all =
        CandidateAllocations(s, total, kShape);
    ASSERT_TRUE(all.ok()) << all.status();
    // pooled-relative-floor joins once half the uniform rank exceeds 1.
    ASSERT_EQ(all->size(), total / 10 / 2 > 1 ? 6u : 5u) << total;
    for (const Allocation& a : *all) {
      ExpectBounds(a, kShape);
      if (a.name == "uniform") {
        EXPECT_EQ(a.Total(), total / 10 * 10);
      } else {
        EXPECT_EQ(a.Total(), total) << a.name << " budget " << total;
      }
    }
    // Adjusted keeps separate K and V budgets and the paper's bounds.
    const Allocation& adj = (*all)[1];
    int64_t k = 0;
    for (int64_t r : adj.rank_k) k += r;
    EXPECT_EQ(k, total - total / 2);
    const int64_t bk = total - total / 2;
    for (int64_t r : adj.rank_k) {
      EXPECT_GE(r, std::max<int64_t>(1, bk / 5 / 2));
      EXPECT_LE(r, std::min<int64_t>(32, 2 * ((bk + 4) / 5)));
    }
  }
}

TEST(AllocateTest, DeterministicAndMonotoneInBudget) {
  const LayerSpectra s = Spectra(kShape, 2);
  Allocation prev_pooled, prev_tail;
  for (int64_t total = 10; total <= 320; ++total) {
    const Allocation a = *AllocatePooled(s, total, kShape, true);
    const Allocation again = *AllocatePooled(s, total, kShape, true);
    EXPECT_EQ(a.rank_k, again.rank_k);
    EXPECT_EQ(a.rank_v, again.rank_v);
    const Allocation t = *AllocatePooled(s, total, kShape, false);
    if (total > 10) {
      // Fixed bounds: each budget's result extends the previous one.
      for (int64_t l = 0; l < 5; ++l) {
        EXPECT_GE(a.rank_k[l], prev_pooled.rank_k[l]);
        EXPECT_GE(a.rank_v[l], prev_pooled.rank_v[l]);
        EXPECT_GE(t.rank_k[l], prev_tail.rank_k[l]);
        EXPECT_GE(t.rank_v[l], prev_tail.rank_v[l]);
      }
    }
    prev_pooled = a;
    prev_tail = t;
  }
  const Allocation a1 = *AllocateAdjusted(s, 100, kShape, {});
  const Allocation a2 = *AllocateAdjusted(s, 100, kShape, {});
  EXPECT_EQ(a1.rank_k, a2.rank_k);
  EXPECT_EQ(a1.rank_v, a2.rank_v);
}

TEST(AllocateTest, RankFollowsTheSpectrum) {
  // Layer 2's K spectrum is flat (every direction matters); the others decay
  // geometrically. Pooled relative energy gives layer 2 the most K rank. The
  // paper score σ²_{r+1}/tail is constant (0.91) on a geometric spectrum and
  // only 1/(16−r) on the flat one, so adjusted leaves layer 2 at its floor:
  // the bias behind its losses to uniform (docs/quality.md).
  ModelShape shape{.layers = 4, .kv_width = 16, .max_rank = 16};
  LayerSpectra s;
  for (int64_t l = 0; l < 4; ++l) {
    Eigen::VectorXd fast(16), flat = Eigen::VectorXd::Ones(16);
    for (int i = 0; i < 16; ++i) fast(i) = std::pow(0.3, i);
    s.k.push_back(l == 2 ? flat : fast);
    s.v.push_back(fast);
  }
  const Allocation adj = *AllocateAdjusted(s, 64, shape, {});
  const Allocation pooled = *AllocatePooled(s, 64, shape, true);
  for (int64_t l : {0, 1, 3}) {
    EXPECT_GT(pooled.rank_k[2], pooled.rank_k[l]);
  }
  EXPECT_EQ(adj.rank_k[2], 4);  // floor ⌊32/4⌋/2
  // Adjusted's ceiling: 2·⌈32/4⌉ = 16.
  EXPECT_LE(adj.rank_k[2], 16);
}

TEST(AllocateTest, AdjustedFactorsChangeTheScore) {
  // Identical spectra everywhere: the depth factor favours early layers.
  ModelShape shape{.layers = 4, .kv_width = 16, .max_rank = 16};
  LayerSpectra s;
  Eigen::VectorXd sigma(16);
  for (int i = 0; i < 16; ++i) sigma(i) = 1.0 / (i + 1);
  s.k.assign(4, sigma);
  s.v.assign(4, sigma);
  const Allocation plain = *AllocateAdjusted(s, 64, shape, {});
  EXPECT_EQ(plain.Total(), 64);
  const Allocation depth =
      *AllocateAdjusted(s, 64, shape, {.depth_factor = true});
  EXPECT_EQ(depth.name, "adjusted-code");
  EXPECT_GT(depth.rank_k[0], depth.rank_k[3]);
  EXPECT_GE(depth.rank_k[0], plain.rank_k[0]);
  EXPECT_EQ(depth.Total(), 64);
}

TEST(AllocateTest, ChooseAllocationPicksTheLowestFiniteScore) {
  const LayerSpectra s = Spectra(kShape, 3);
  std::vector<Allocation> c = *CandidateAllocations(s, 80, kShape);
  ASSERT_EQ(c.size(), 6u);
  EXPECT_EQ(c[5].name, "pooled-relative-floor");
  for (int64_t r : c[5].rank_k) EXPECT_GE(r, 4);  // floor: ⌊80/10⌋/2
  const std::vector<double> scores = {2.0, NAN, 1.5, 1.5, 3.0, 1.6};
  int64_t calls = 0;
  const AutoChoice choice =
      *ChooseAllocation(c, [&](const Allocation&) -> absl::StatusOr<double> {
        return scores[calls++];
      });
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(choice.best, 2);  // first of the tied 1.5s; NaN never wins
  EXPECT_EQ(choice.candidates[2].allocation.name, "adjusted-code");
  const absl::Status err =
      ChooseAllocation(c, [](const Allocation& a) -> absl::StatusOr<double> {
        if (a.name == "adjusted") return absl::InternalError("boom");
        return 1.0;
      }).status();
  EXPECT_NE(err.message().find("\"adjusted\": boom"), std::string::npos) << err;
  EXPECT_FALSE(ChooseAllocation({}, nullptr).ok());
}

TEST(AllocateTest, StrategyNames) {
  EXPECT_EQ(*ParseAllocationStrategy("auto"), AllocationStrategy::kAuto);
  const absl::Status s = ParseAllocationStrategy("best").status();
  EXPECT_NE(s.message().find("uniform, adjusted or auto"), std::string::npos);
}

}  // namespace
}  // namespace care::convert
