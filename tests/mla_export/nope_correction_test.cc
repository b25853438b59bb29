#include "care/convert/mla_export/nope_correction.h"

#include <gtest/gtest.h>

#include <cmath>

namespace care::convert::mla {
namespace {

struct Layer {
  MatrixRM wq, wk, x;
  RopeSplit rope;
};

Layer Make(unsigned seed) {
  std::srand(seed);
  Layer s;
  const int64_t d = 16, n_h = 4, g = 2, dh = 8;
  s.wq = MatrixRM::Random(n_h * dh, d);
  s.wk = MatrixRM::Random(d, g * dh);
  s.x = MatrixRM::Random(6 * 12, d);  // 6 windows of 12 tokens
  const Eigen::MatrixXd wk = s.wk.cast<double>();
  s.rope = *SplitRope(wk.transpose() * wk, {g, dh, 4, 1});
  return s;
}

NopeCorrectionInputs Inputs(const Layer& s, std::vector<double> inv_freq) {
  NopeCorrectionInputs in;
  in.w_q = &s.wq;
  in.w_k = &s.wk;
  in.rope = &s.rope;
  in.inv_freq = std::move(inv_freq);
  in.num_heads = 4;
  in.seq_len = 12;
  return in;
}

TEST(NopeCorrectionTest, NeverWorseThanDroppingTheRotation) {
  const Layer s = Make(1);
  absl::StatusOr<NopeCorrection> c =
      FitNopeCorrection(Inputs(s, {1.0, 0.3, 0.05, 0.001}), s.x);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->m.size(), 4u * 4u);
  EXPECT_GT(c->dropped_error, 0);
  EXPECT_LE(c->corrected_error, c->dropped_error);
  // The fastest frequency's rotation averages out: its map shrinks.
  EXPECT_LT(c->m[0].norm(), std::sqrt(2.0));
}

TEST(NopeCorrectionTest, NoRotationMeansIdentityAndNoError) {
  const Layer s = Make(2);
  absl::StatusOr<NopeCorrection> c =
      FitNopeCorrection(Inputs(s, {0, 0, 0, 0}), s.x);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NEAR(c->dropped_error, 0, 1e-12);
  for (const Eigen::Matrix2d& m : c->m) {
    EXPECT_LT((m - Eigen::Matrix2d::Identity()).norm(), 1e-6);
  }
}

TEST(NopeCorrectionTest, RejectsInconsistentShapes) {
  const Layer s = Make(3);
  NopeCorrectionInputs in = Inputs(s, {1, 1, 1});  // d_h/2 = 4 needed
  EXPECT_FALSE(FitNopeCorrection(in, s.x).ok());
  in = Inputs(s, {1, 1, 1, 1});
  in.seq_len = 7;  // 72 rows are not whole windows of 7
  EXPECT_FALSE(FitNopeCorrection(in, s.x).ok());
}

}  // namespace
}  // namespace care::convert::mla
