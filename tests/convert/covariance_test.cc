#include "care/convert/covariance.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace care::convert {
namespace {

MatrixRM RandomActivations(int64_t tokens, int64_t dim, unsigned seed) {
  std::srand(seed);
  MatrixRM x = MatrixRM::Random(tokens, dim);  // [tokens, D]
  // Channel scales spanning 3 orders of magnitude, like post-norm outliers.
  for (int64_t j = 0; j < dim; ++j) x.col(j) *= std::pow(10.0f, (j % 7) / 2.0f);
  return x;
}

TEST(CovarianceTest, MatchesFloat64ReferenceAcrossBlocksAndTiles) {
  // D = 200 is not a multiple of the 128 tile; 700 tokens in uneven adds span
  // several 256-row float32 blocks.
  const MatrixRM x = RandomActivations(700, 200, 1);
  CovarianceAccumulator acc(200);
  ASSERT_TRUE(acc.Add(x.topRows(300)).ok());
  ASSERT_TRUE(acc.Add(x.middleRows(300, 1)).ok());
  ASSERT_TRUE(acc.Add(x.bottomRows(399)).ok());
  EXPECT_EQ(acc.tokens(), 700);

  const Eigen::MatrixXd xd = x.cast<double>();
  const Eigen::MatrixXd ref = xd.transpose() * xd / 700.0;  // [D, D]
  const Eigen::MatrixXd c = acc.Covariance();
  ASSERT_EQ(c.rows(), 200);
  // Float32 products over <= 256 terms: relative error bounded by
  // 256·2⁻²⁴ ≈ 1.5e-5 of Σ|x_i x_j| <= sqrt(C_ii C_jj)·N (Cauchy-Schwarz).
  for (int i = 0; i < 200; ++i) {
    for (int j = 0; j < 200; ++j) {
      const double scale = std::sqrt(ref(i, i) * ref(j, j));
      EXPECT_NEAR(c(i, j), ref(i, j), 2e-5 * scale) << i << "," << j;
      EXPECT_EQ(c(i, j), c(j, i));  // exactly symmetric
    }
  }
  const Eigen::VectorXd mean_abs =
      xd.cwiseAbs().colwise().sum().transpose() / 700.0;
  EXPECT_LT((acc.MeanAbs() - mean_abs).cwiseAbs().maxCoeff(),
            1e-5 * mean_abs.maxCoeff());
}

TEST(CovarianceTest, MergeEqualsSingleAccumulator) {
  const MatrixRM x = RandomActivations(90, 17, 2);
  CovarianceAccumulator a(17), b(17), whole(17);
  ASSERT_TRUE(a.Add(x.topRows(40)).ok());
  ASSERT_TRUE(b.Add(x.bottomRows(50)).ok());
  ASSERT_TRUE(whole.Add(x).ok());
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(a.tokens(), 90);
  // Different float32 blocks (40 + 50 rows vs 90): float32 rounding only.
  EXPECT_LT((a.Covariance() - whole.Covariance()).norm(),
            2e-5 * whole.Covariance().norm());
  CovarianceAccumulator other(18);
  EXPECT_FALSE(a.Merge(other).ok());
}

TEST(CovarianceTest, EmptyIsZeroAndBadInputIsRejected) {
  CovarianceAccumulator acc(4);
  EXPECT_EQ(acc.Covariance().norm(), 0.0);
  EXPECT_EQ(acc.MeanAbs().norm(), 0.0);
  const absl::Status wrong = acc.Add(MatrixRM::Zero(3, 5));
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("expected the hidden size 4"),
            std::string::npos)
      << wrong;
  MatrixRM nan = MatrixRM::Zero(2, 4);
  nan(1, 2) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(acc.Add(nan).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.tokens(), 0);
  // Either infinity anywhere (the last element too) is rejected; the largest
  // finite floats and denormals are data.
  for (float bad : {std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::quiet_NaN()}) {
    MatrixRM x = MatrixRM::Ones(3, 4);
    x(2, 3) = bad;
    EXPECT_EQ(acc.Add(x).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(acc.tokens(), 0);
  MatrixRM edge = MatrixRM::Zero(2, 4);
  edge(0, 0) = std::numeric_limits<float>::max();
  edge(1, 3) = -std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(acc.Add(edge).ok());
  EXPECT_EQ(acc.tokens(), 2);
}

}  // namespace
}  // namespace care::convert
