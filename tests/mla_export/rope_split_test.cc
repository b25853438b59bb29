#include "care/convert/mla_export/rope_split.h"

#include <gtest/gtest.h>

#include <Eigen/QR>

namespace care::convert::mla {
namespace {

Eigen::MatrixXd RandomGram(int64_t n, unsigned seed) {
  std::srand(seed);
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(3 * n, n);
  return a.transpose() * a;
}

TEST(RopeSplitTest, RowsAreOrthonormalForEveryShape) {
  for (const RopeSplitShape& s :
       {RopeSplitShape{2, 8, 8, 1}, RopeSplitShape{2, 8, 8, 2},
        RopeSplitShape{4, 16, 8, 4}, RopeSplitShape{3, 8, 2, 1}}) {
    const int64_t w = s.num_kv_heads * s.head_dim;
    absl::StatusOr<RopeSplit> r = SplitRope(RandomGram(w, 1), s);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->pe.rows(), s.rope_dim);
    ASSERT_EQ(r->pe.cols(), w);
    EXPECT_LT((r->pe * r->pe.transpose() -
               Eigen::MatrixXd::Identity(s.rope_dim, s.rope_dim))
                  .norm(),
              1e-12);
    EXPECT_GT(r->rope_energy, 0);
    EXPECT_LE(r->rope_energy, 1 + 1e-12);
  }
}

TEST(RopeSplitTest, OneKvHeadKeepsTheWholeKey) {
  absl::StatusOr<RopeSplit> r = SplitRope(RandomGram(8, 2), {1, 8, 8, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT((r->Projector() - Eigen::MatrixXd::Identity(8, 8)).norm(), 1e-12);
  EXPECT_NEAR(r->rope_energy, 1.0, 1e-12);
}

TEST(RopeSplitTest, KeptPairIsTheDominantHeadMixPerFrequency) {
  // Two heads whose keys at every frequency are the same up to a factor 3:
  // the kept pair is (k0 + 3·k1)/sqrt(10) and carries all the energy.
  const int64_t dh = 4;
  Eigen::MatrixXd base = RandomGram(dh, 3);  // one head's Gram
  Eigen::MatrixXd mix(2 * dh, dh);
  mix << Eigen::MatrixXd::Identity(dh, dh),
      3 * Eigen::MatrixXd::Identity(dh, dh);
  const Eigen::MatrixXd gram = mix * base * mix.transpose();
  absl::StatusOr<RopeSplit> r = SplitRope(gram, {2, dh, dh, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->rope_energy, 1.0, 1e-10);
  // Pair 0 (frequency 0): rows 0 and 1, x component at dims 0 and 4.
  EXPECT_NEAR(std::abs(r->pe(0, 0)), 1 / std::sqrt(10.0), 1e-10);
  EXPECT_NEAR(std::abs(r->pe(0, dh)), 3 / std::sqrt(10.0), 1e-10);
  // y component at dims 2 and 6, the same mix.
  EXPECT_NEAR(r->pe(1, 2), r->pe(0, 0), 1e-12);
  EXPECT_NEAR(r->pe(1, dh + 2), r->pe(0, dh), 1e-12);
}

TEST(RopeSplitTest, RejectsShapesTheFormatCannotHold) {
  const Eigen::MatrixXd g = RandomGram(16, 4);
  for (const RopeSplitShape& s :
       {RopeSplitShape{2, 8, 10, 1}, RopeSplitShape{2, 8, 3, 1},
        RopeSplitShape{2, 8, 8, 3}, RopeSplitShape{2, 8, 0, 1}}) {
    EXPECT_FALSE(SplitRope(g, s).ok()) << s.rope_dim << " " << s.freqfold;
  }
  EXPECT_FALSE(SplitRope(RandomGram(8, 5), {2, 8, 8, 1}).ok());
}

}  // namespace
}  // namespace care::convert::mla
