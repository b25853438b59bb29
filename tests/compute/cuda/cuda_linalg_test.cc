// GPU checks of the calibration Gram (fp32 SYRK blocks accumulated in fp64)
// and the cuSOLVER eigen / SVD paths against host double arithmetic.
#include <Eigen/Dense>
#include <cmath>
#include <cstdint>
#include <vector>

#include "care/compute/backend.h"
#include "cuda_test_util.h"
#include "gtest/gtest.h"

namespace care::compute {
namespace {

using testing::Down;
using testing::Random;
using testing::Up;

// Σ xᵀx over 700 rows (3 SYRK blocks, the last partial) and Σ|x|, added in
// two calls. An fp32 block sum covers ≤ 256 products of magnitude ≤ 1, so
// partial sums stay ≤ 256 and each addition rounds by ≤ 256·2⁻²⁴ ≈ 1.5e-5;
// a random walk over 256 additions gives ~2.4e-4 per block, ~4e-4 over the
// blocks: 1e-3 absolute. A wrong triangle or index is off by O(1..100).
TEST(CudaGram, MatchesDoubleSums) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t D = 300, n1 = 500, n2 = 200;
  const auto x = Random((n1 + n2) * D, 20);
  absl::StatusOr<Gram> g = b->NewGram(D);
  ASSERT_TRUE(g.ok()) << g.status();
  Matrix dx = Up(*b, x, n1 + n2, D);
  ASSERT_TRUE(b->GramAdd(RowsView(dx, 0, n1), &*g).ok());
  ASSERT_TRUE(b->GramAdd(RowsView(dx, n1, n2), &*g).ok());
  EXPECT_EQ(g->tokens, n1 + n2);
  absl::StatusOr<GramHost> h = b->GramDownload(*g);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->tokens, n1 + n2);
  Eigen::MatrixXd want = Eigen::MatrixXd::Zero(D, D);
  Eigen::VectorXd abs = Eigen::VectorXd::Zero(D);
  for (int64_t r = 0; r < n1 + n2; ++r) {
    for (int64_t i = 0; i < D; ++i) {
      abs(i) += std::fabs(x[r * D + i]);
      for (int64_t j = 0; j < D; ++j) {
        want(i, j) += double{x[r * D + i]} * x[r * D + j];
      }
    }
  }
  EXPECT_LT((h->sum - want).cwiseAbs().maxCoeff(), 1e-3);
  EXPECT_LT((h->abs_sum - abs).cwiseAbs().maxCoeff(), 1e-9);
  EXPECT_EQ(h->sum, h->sum.transpose());  // symmetric exactly
}

TEST(CudaGram, RejectsNonFiniteAndAddsNothing) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t D = 8;
  std::vector<float> x = Random(4 * D, 21);
  x[13] = NAN;
  absl::StatusOr<Gram> g = b->NewGram(D);
  ASSERT_TRUE(g.ok());
  const absl::Status st = b->GramAdd(Up(*b, x, 4, D), &*g);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(g->tokens, 0);
  absl::StatusOr<GramHost> h = b->GramDownload(*g);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->sum.cwiseAbs().maxCoeff(), 0.0);
  // A width other than D is refused too.
  EXPECT_EQ(b->GramAdd(Up(*b, x, 2, 2 * D), &*g).code(),
            absl::StatusCode::kInvalidArgument);
}

// fp64 throughout: residuals at 1e-10 of the norm.
TEST(CudaLinalg, SymmetricEigenDecomposes) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  const int64_t n = 120;
  Eigen::MatrixXd m = Eigen::MatrixXd::Random(n, n);
  const Eigen::MatrixXd a = m * m.transpose();
  absl::StatusOr<SymmetricEigenResult> r = b->SymmetricEigen(a);
  ASSERT_TRUE(r.ok()) << r.status();
  const double norm = a.norm();
  for (int64_t i = 1; i < n; ++i) EXPECT_LE(r->values(i - 1), r->values(i));
  EXPECT_LT((a * r->vectors - r->vectors * r->values.asDiagonal()).norm(),
            1e-10 * norm);
  EXPECT_LT(
      (r->vectors.transpose() * r->vectors - Eigen::MatrixXd::Identity(n, n))
          .norm(),
      1e-10 * n);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> ref(a);
  EXPECT_LT((r->values - ref.eigenvalues()).cwiseAbs().maxCoeff(),
            1e-10 * norm);
}

TEST(CudaLinalg, SvdTallAndWide) {
  CARE_CUDA_BACKEND_OR_SKIP(b);
  for (auto [m, n] : {std::pair<int64_t, int64_t>{90, 40}, {40, 90}}) {
    const Eigen::MatrixXd a = Eigen::MatrixXd::Random(m, n);
    absl::StatusOr<SvdResult> r = b->Svd(a, true, true);
    ASSERT_TRUE(r.ok()) << r.status();
    const int64_t k = std::min(m, n);
    ASSERT_EQ(r->values.size(), k);
    ASSERT_EQ(r->u.rows(), m);
    ASSERT_EQ(r->u.cols(), k);
    ASSERT_EQ(r->v.rows(), n);
    ASSERT_EQ(r->v.cols(), k);
    for (int64_t i = 1; i < k; ++i) EXPECT_GE(r->values(i - 1), r->values(i));
    EXPECT_LT((r->u * r->values.asDiagonal() * r->v.transpose() - a).norm(),
              1e-10 * a.norm())
        << m << "x" << n;
    Eigen::JacobiSVD<Eigen::MatrixXd> ref(a);
    EXPECT_LT((r->values - ref.singularValues()).cwiseAbs().maxCoeff(),
              1e-10 * a.norm());
    // Values only.
    absl::StatusOr<SvdResult> v = b->Svd(a, false, false);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->u.size(), 0);
    EXPECT_EQ(v->v.size(), 0);
    EXPECT_LT((v->values - r->values).cwiseAbs().maxCoeff(), 1e-12 * a.norm());
  }
}

}  // namespace
}  // namespace care::compute
