#include "care/convert/factorize.h"

#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <cmath>
#include <tuple>
#include <vector>

#include "care/convert/covariance.h"
#include "care/convert/decompose_model.h"
#include "care/convert/latent_layer.h"

namespace care::convert {
namespace {

constexpr int64_t kD = 48;
constexpr int64_t kOut = 24;

// Correlated, anisotropic activations: X = Z·A with a random mixing A and
// column scales over two orders of magnitude, so whitening matters.
MatrixRM Activations(int64_t tokens, unsigned seed) {
  std::srand(seed);
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(kD, kD);
  for (int64_t j = 0; j < kD; ++j) a.row(j) *= std::pow(10.0f, -2.0f * j / kD);
  const Eigen::MatrixXf z = Eigen::MatrixXf::Random(tokens, kD);
  return z * a;  // [tokens, D]
}

MatrixRM Weight(unsigned seed) {
  std::srand(seed);
  return MatrixRM::Random(kD, kOut);  // [D, out]
}

LayerStatistics Stats(const MatrixRM& x) {
  CovarianceAccumulator acc(x.cols());
  EXPECT_TRUE(acc.Add(x).ok());
  return {acc.Covariance(), acc.MeanAbs(), acc.tokens()};
}

Factors Factor(const LayerStatistics& stats, const MatrixRM& w,
               FactorizeOptions options, int64_t rank) {
  absl::StatusOr<Scaling> s = BuildScaling(stats, options);
  EXPECT_TRUE(s.ok()) << s.status();
  absl::StatusOr<Decomposition> d = Decompose(*s, w);
  EXPECT_TRUE(d.ok()) << d.status();
  absl::StatusOr<Factors> f = Truncate(*d, w, rank);
  EXPECT_TRUE(f.ok()) << f.status();
  return *f;
}

const Method kMethods[] = {Method::kCare, Method::kCareC, Method::kAsvd,
                           Method::kSvd};

TEST(FactorizeTest, FullRankReproducesWeightForEveryMethod) {
  const MatrixRM x = Activations(500, 1);
  const MatrixRM w = Weight(2);
  const LayerStatistics stats = Stats(x);
  for (Method m : kMethods) {
    for (double damping : {0.0, 0.01}) {
      const Factors f =
          Factor(stats, w, {.method = m, .damping = damping}, kOut);
      ASSERT_EQ(f.w_down.rows(), kD);
      ASSERT_EQ(f.w_down.cols(), kOut);
      ASSERT_EQ(f.w_up.rows(), kOut);
      const MatrixRM w_hat = f.w_down * f.w_up;  // [D, out]
      // W·V·Vᵀ with V orthogonal, factors rounded to float32: ~1e-7 relative.
      EXPECT_LT((w_hat - w).norm(), 1e-5 * w.norm()) << MethodName(m);
      EXPECT_NEAR(f.retained_energy, 1.0, 1e-12);
    }
  }
}

TEST(FactorizeTest, CareIsTheActivationOptimumAtEveryRank) {
  const MatrixRM x = Activations(800, 3);
  const MatrixRM w = Weight(4);
  const LayerStatistics stats = Stats(x);
  for (int64_t r = 1; r < kOut; ++r) {
    const double care = RelativeActivationError(
        stats.covariance, w,
        Factor(stats, w, {.method = Method::kCare, .damping = 0}, r));
    for (Method m : {Method::kCareC, Method::kAsvd, Method::kSvd}) {
      const double other = RelativeActivationError(
          stats.covariance, w,
          Factor(stats, w, {.method = m, .damping = 0}, r));
      // Optimal up to float32 rounding of the factors (~1e-7 relative of
      // ‖XW‖²) and of C (1.5e-5 relative, see covariance_test).
      EXPECT_LE(care, other + 1e-6) << "rank " << r << " vs " << MethodName(m);
    }
  }
  // And the data matters: at half rank plain SVD is clearly worse.
  const double care = RelativeActivationError(
      stats.covariance, w, Factor(stats, w, {.damping = 0}, kOut / 2));
  const double svd = RelativeActivationError(
      stats.covariance, w,
      Factor(stats, w, {.method = Method::kSvd}, kOut / 2));
  EXPECT_LT(care, 0.5 * svd);
}

TEST(FactorizeTest, WhitenedTailEqualsMeasuredCalibrationError) {
  const MatrixRM x = Activations(600, 5);
  const MatrixRM w = Weight(6);
  const LayerStatistics stats = Stats(x);
  const double total =
      (w.cast<double>().transpose() * stats.covariance * w.cast<double>())
          .trace();
  for (int64_t r : {1, 5, 12, 23}) {
    const Factors f = Factor(stats, w, {.damping = 0}, r);
    // Measured directly on the tokens: (1/N)‖X·W − X·Ŵ‖².
    const Eigen::MatrixXd xd = x.cast<double>();
    const Eigen::MatrixXd err =
        xd * w.cast<double>() -
        xd * (f.w_down.cast<double>() * f.w_up.cast<double>());
    const double measured = err.squaredNorm() / x.rows();
    // Float32 factors: the identity holds to ~1e-7 of the total energy.
    EXPECT_NEAR(f.tail_energy, measured, 1e-6 * total) << "rank " << r;
    EXPECT_NEAR(1.0 - f.retained_energy, measured / total, 1e-6);
  }
}

TEST(FactorizeTest, GramErrorEqualsCovarianceError) {
  // The report measures errors from G = WᵀCW (no D×D C kept per layer);
  // it must agree with the direct tr(ΔᵀCΔ)/tr(WᵀCW) on any covariance.
  const MatrixRM w = Weight(14);
  const LayerStatistics cal = Stats(Activations(300, 15));
  const LayerStatistics held = Stats(Activations(200, 16));
  const Decomposition d = *Decompose(*BuildScaling(cal, {}), w);
  const Eigen::MatrixXd wd = w.cast<double>();
  const Eigen::MatrixXd gram = wd.transpose() * held.covariance * wd;
  for (int64_t r : {1, 7, 16, 24}) {
    const Factors f = *Truncate(d, w, r);
    // Float32 factors vs the exact projection: ~1e-7 relative.
    EXPECT_NEAR(RelativeErrorFromGram(gram, d, r),
                RelativeActivationError(held.covariance, w, f), 1e-6)
        << "rank " << r;
  }
  EXPECT_LT(RelativeErrorFromGram(gram, d, kOut), 1e-12);
}

TEST(FactorizeTest, GramRouteMatchesTheFactoredRoute) {
  const MatrixRM x = Activations(400, 11);
  LayerWeights lw;
  lw.w_k = Weight(12);
  lw.w_v = Weight(13);
  const LayerStatistics stats = Stats(x);
  const FactorizeOptions o{.damping = 0.01};
  ASSERT_TRUE(GramRouteApplies(o));
  EXPECT_FALSE(GramRouteApplies({.damping = 0.0}));
  EXPECT_FALSE(GramRouteApplies({.method = Method::kCareC, .damping = 0.01}));
  // Undamped Grams WᵀCW, as FitLayer forms them for the report.
  auto gram = [&](const MatrixRM& w) {
    const Eigen::MatrixXd wd = w.cast<double>();
    return Eigen::MatrixXd(wd.transpose() * stats.covariance * wd);
  };
  const Eigen::MatrixXd gk = gram(lw.w_k), gv = gram(lw.w_v);
  const LayerDecomposition factored = *DecomposeLayer(lw, stats, o);
  const LayerDecomposition direct = *DecomposeLayer(lw, stats, o, &gk, &gv);
  // The same matrix (S·W)ᵀ(S·W) = Wᵀ(C + δI)W up to float64 rounding: same
  // spectrum to ~1e-12 relative (1e-9 allows the eigensolver's own error
  // amplified by the Cholesky route's conditioning), same rank-r factors to
  // float32 rounding (1e-5 of ‖W‖, as Cholesky vs eigen whitening).
  EXPECT_DOUBLE_EQ(direct.scaling.damping_added,
                   factored.scaling.damping_added);
  for (const auto& [a, b, w] : {std::tuple{&factored.k, &direct.k, &lw.w_k},
                                std::tuple{&factored.v, &direct.v, &lw.w_v}}) {
    EXPECT_LT((a->singular_values - b->singular_values).norm(),
              1e-9 * a->singular_values.norm());
    for (int64_t r : {int64_t{3}, int64_t{10}, kOut}) {
      const Factors fa = *Truncate(*a, *w, r);
      const Factors fb = *Truncate(*b, *w, r);
      EXPECT_LT(MatrixRM(fa.w_down * fa.w_up - fb.w_down * fb.w_up).norm(),
                1e-5 * w->norm())
          << "rank " << r;
    }
  }
  // A deferred scaling is not a usable S.
  const Scaling deferred = *ScalingInfoOnly(stats, o);
  EXPECT_TRUE(deferred.deferred);
  EXPECT_EQ(Decompose(deferred, lw.w_k).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(ScalingInfoOnly(stats, {.damping = 0.0}).ok());
}

TEST(FactorizeTest, CholeskyAndEigenWhiteningAgree) {
  const MatrixRM x = Activations(400, 7);
  const MatrixRM w = Weight(8);
  const LayerStatistics stats = Stats(x);
  for (double damping : {0.0, 0.01}) {
    FactorizeOptions chol{.damping = damping,
                          .solver = WhiteningSolver::kCholesky};
    FactorizeOptions eig{.damping = damping, .solver = WhiteningSolver::kEigen};
    const Decomposition dc = *Decompose(*BuildScaling(stats, chol), w);
    const Decomposition de = *Decompose(*BuildScaling(stats, eig), w);
    // Same singular values (SᵀS = C for both S); float64 solvers.
    EXPECT_LT((dc.singular_values - de.singular_values).norm(),
              1e-9 * dc.singular_values.norm());
    for (int64_t r : {3, 10}) {
      const Factors fc = *Truncate(dc, w, r);
      const Factors fe = *Truncate(de, w, r);
      const MatrixRM wc = fc.w_down * fc.w_up;
      const MatrixRM we = fe.w_down * fe.w_up;
      EXPECT_LT((wc - we).norm(), 1e-5 * w.norm()) << "rank " << r;
    }
  }
}

TEST(FactorizeTest, RankDeficientAndTinySamplesNeverProduceNaN) {
  // 10 tokens for 48 channels, one channel never active, no damping.
  MatrixRM x = Activations(10, 9);
  x.col(3).setZero();
  const MatrixRM w = Weight(10);
  const LayerStatistics stats = Stats(x);
  for (WhiteningSolver solver :
       {WhiteningSolver::kCholesky, WhiteningSolver::kEigen}) {
    for (Method m : kMethods) {
      FactorizeOptions o{.method = m, .damping = 0, .solver = solver};
      absl::StatusOr<Scaling> s = BuildScaling(stats, o);
      ASSERT_TRUE(s.ok()) << s.status();
      if (m != Method::kSvd) {
        EXPECT_EQ(s->info.zero_channels, 1);
        EXPECT_NE(s->info.note.find("rank-deficient"), std::string::npos)
            << s->info.note;
      }
      if (m == Method::kCare && solver == WhiteningSolver::kCholesky) {
        EXPECT_GT(s->info.jitter_added, 0);
      }
      if (m == Method::kCare && solver == WhiteningSolver::kEigen) {
        // 38 exact zeros; float32 accumulation noise leaves some slightly
        // positive (harmless: S is never inverted), the rest are clamped.
        EXPECT_GT(s->info.clamped_eigenvalues, 0);
      }
      const Decomposition d = *Decompose(*s, w);
      EXPECT_TRUE(d.singular_values.allFinite());
      for (int64_t r : {int64_t{1}, int64_t{8}, kOut}) {
        const Factors f = *Truncate(d, w, r);
        EXPECT_TRUE(f.w_down.allFinite() && f.w_up.allFinite());
        EXPECT_TRUE(std::isfinite(f.retained_energy));
        if (r == kOut) {
          EXPECT_LT((f.w_down * f.w_up - w).norm(), 1e-5 * w.norm());
        }
      }
    }
  }
}

TEST(FactorizeTest, NoDataFallsBackToPlainSvd) {
  const MatrixRM w = Weight(11);
  LayerStatistics empty{Eigen::MatrixXd::Zero(kD, kD),
                        Eigen::VectorXd::Zero(kD), 0};
  const Scaling s = *BuildScaling(empty, {});
  EXPECT_TRUE(s.info.identity_fallback);
  const Factors care = *Truncate(*Decompose(s, w), w, 6);
  const Factors svd = *Truncate(
      *Decompose(*BuildScaling(empty, {.method = Method::kSvd}), w), w, 6);
  EXPECT_LT((care.w_down * care.w_up - svd.w_down * svd.w_up).norm(),
            1e-6 * w.norm());
  // Eckart–Young: plain SVD's tail is the weight's own tail energy.
  Eigen::JacobiSVD<Eigen::MatrixXd> ref(w.cast<double>());
  EXPECT_NEAR(svd.tail_energy,
              ref.singularValues().tail(kOut - 6).squaredNorm(),
              1e-9 * w.squaredNorm());
}

TEST(FactorizeTest, BadInputsAreRejected) {
  EXPECT_EQ(ParseMethod("care-c").value(), Method::kCareC);
  const absl::Status bad = ParseMethod("pca").status();
  EXPECT_NE(bad.message().find("care, care-c, asvd or svd"), std::string::npos);
  const LayerStatistics stats = Stats(Activations(100, 12));
  EXPECT_FALSE(BuildScaling(stats, {.damping = -0.1}).ok());
  EXPECT_FALSE(BuildScaling(stats, {.damping = NAN}).ok());
  const MatrixRM w = Weight(13);
  const Decomposition d = *Decompose(*BuildScaling(stats, {}), w);
  EXPECT_EQ(d.max_rank(), kOut);
  const absl::Status r0 = Truncate(d, w, 0).status();
  EXPECT_NE(r0.message().find("[1, 24]"), std::string::npos) << r0;
  EXPECT_FALSE(Truncate(d, w, kOut + 1).ok());
  const MatrixRM narrow = MatrixRM::Random(kD - 1, kOut);
  EXPECT_FALSE(Decompose(*BuildScaling(stats, {}), narrow).ok());
}

}  // namespace
}  // namespace care::convert
