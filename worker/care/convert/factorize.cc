#include "care/convert/factorize.h"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace care::convert {
namespace {

// Eigenvalues at or below this fraction of the largest count as zero: the
// float64 eigen-solver's own error is ~1e-16·λ_max, so 1e-12 separates true
// rank deficiency from rounding with a wide margin.
constexpr double kRelativeEigenFloor = 1e-12;
// Cholesky jitter schedule, as fractions of mean(diag C): 1e-10 … 1e-1.
constexpr double kFirstJitter = 1e-10;
constexpr int kJitterSteps = 10;

void AppendNote(ScalingInfo& info, absl::string_view text) {
  if (!info.note.empty()) info.note += "; ";
  info.note.append(text.data(), text.size());
}

// S = Lᵀ with L·Lᵀ = C (SᵀS = C), adding jitter until C is numerically PD.
void CholeskyFactor(Eigen::MatrixXd c, double mean_diag, Scaling& scaling) {
  double jitter = 0;
  for (int step = 0; step <= kJitterSteps; ++step) {
    Eigen::LLT<Eigen::MatrixXd> llt(c);
    if (llt.info() == Eigen::Success) {
      scaling.dense = llt.matrixU();  // [D, D] = Lᵀ
      scaling.info.jitter_added = jitter;
      if (jitter > 0) {
        AppendNote(scaling.info,
                   absl::StrCat("covariance not positive definite; Cholesky "
                                "needed jitter ",
                                jitter));
      }
      return;
    }
    const double next = mean_diag * kFirstJitter * std::pow(10.0, step);
    c.diagonal().array() += next - jitter;
    jitter = next;
  }
  // Unreachable for a finite PSD C with mean_diag > 0 (jitter reaches 0.1 of
  // the mean diagonal); fall back to no scaling rather than fail the job.
  scaling.dense.resize(0, 0);
  scaling.info.identity_fallback = true;
  AppendNote(scaling.info, "Cholesky failed even with jitter; used plain SVD");
}

// Symmetric S = Q·Λ^½·Qᵀ; tiny and negative (rounding) eigenvalues clamped
// to zero.
void EigenFactor(const Eigen::MatrixXd& c, Scaling& scaling) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(c);
  Eigen::VectorXd lambda = eig.eigenvalues();  // ascending
  const double floor = std::max(lambda.maxCoeff(), 0.0) * kRelativeEigenFloor;
  for (Eigen::Index i = 0; i < lambda.size(); ++i) {
    if (lambda(i) <= floor) {
      lambda(i) = 0;
      ++scaling.info.clamped_eigenvalues;
    }
  }
  if (scaling.info.clamped_eigenvalues > 0) {
    AppendNote(scaling.info,
               absl::StrCat(scaling.info.clamped_eigenvalues,
                            " eigenvalues of the covariance clamped to 0"));
  }
  const Eigen::MatrixXd& q = eig.eigenvectors();  // [D, D]
  scaling.dense = q * lambda.cwiseSqrt().asDiagonal() * q.transpose();
}

// BuildScaling with the factorization optional (ScalingInfoOnly).
absl::StatusOr<Scaling> MakeScaling(const LayerStatistics& stats,
                                    const FactorizeOptions& options,
                                    bool factor);

}  // namespace

// The method's words, both ways (the API's are the same, api/names.h).
constexpr std::pair<Method, absl::string_view> kMethodWords[] = {
    {Method::kCare, "care"},
    {Method::kCareC, "care-c"},
    {Method::kAsvd, "asvd"},
    {Method::kSvd, "svd"},
    {Method::kPca, "pca"}};

absl::StatusOr<Method> ParseMethod(absl::string_view name) {
  for (const auto& [method, word] : kMethodWords) {
    if (name == word) return method;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown method \"", name,
                   "\"; expected care, care-c, asvd, svd or pca"));
}

std::string MethodName(Method method) {
  for (const auto& [m, word] : kMethodWords) {
    if (m == method) return std::string(word);
  }
  return "unknown";
}

bool MethodUsesData(Method method) { return method != Method::kSvd; }

Eigen::MatrixXd Scaling::Apply(const Eigen::MatrixXd& w) const {
  if (dense.size() > 0) return dense * w;  // [D, D]·[D, out]
  if (diagonal.size() > 0) return diagonal.asDiagonal() * w;
  return w;
}

bool GramRouteApplies(const FactorizeOptions& options) {
  return options.method == Method::kCare && options.damping > 0;
}

absl::StatusOr<Scaling> ScalingInfoOnly(const LayerStatistics& stats,
                                        const FactorizeOptions& options) {
  if (!GramRouteApplies(options)) {
    return absl::InvalidArgumentError(
        "the Gram route needs method care with damping > 0");
  }
  return MakeScaling(stats, options, /*factor=*/false);
}

absl::StatusOr<Scaling> BuildScaling(const LayerStatistics& stats,
                                     const FactorizeOptions& options) {
  return MakeScaling(stats, options, /*factor=*/true);
}

namespace {

absl::StatusOr<Scaling> MakeScaling(const LayerStatistics& stats,
                                    const FactorizeOptions& options,
                                    bool factor) {
  Scaling scaling;
  scaling.method = options.method;
  const Eigen::MatrixXd& c = stats.covariance;
  // Diagonal-only statistics (the Gram route's): enough for the checks,
  // notes and damping below, not for forming S.
  const bool diagonal_only = c.size() == 0 && stats.diagonal.size() > 0;
  const Eigen::VectorXd diag = diagonal_only ? stats.diagonal : c.diagonal();
  scaling.dim = diagonal_only ? diag.size() : c.rows();
  if (!(options.damping >= 0) || !std::isfinite(options.damping)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "damping must be a finite number >= 0, got ", options.damping));
  }
  if (options.method == Method::kSvd) return scaling;

  const int64_t d = scaling.dim;
  if ((!diagonal_only && c.cols() != d) || stats.mean_abs.size() != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration statistics: covariance is ", c.rows(), "x",
                     c.cols(), " and mean |x| has ", stats.mean_abs.size(),
                     " entries; expected ", d, "x", d, " and ", d));
  }
  if (diagonal_only && (factor || !GramRouteApplies(options))) {
    return absl::FailedPreconditionError(
        "calibration statistics hold only diag C; forming the scaling needs "
        "the covariance");
  }
  if (!diag.allFinite() || (!diagonal_only && !c.allFinite()) ||
      !stats.mean_abs.allFinite()) {
    return absl::InvalidArgumentError(
        "calibration statistics contain a non-finite value");
  }
  scaling.info.zero_channels = (diag.array() <= 0).count();
  if (scaling.info.zero_channels > 0) {
    AppendNote(scaling.info, absl::StrCat(scaling.info.zero_channels,
                                          " input channels never active"));
  }
  if (stats.tokens > 0 && stats.tokens < d) {
    AppendNote(scaling.info,
               absl::StrCat("only ", stats.tokens, " calibration tokens for ",
                            d, " channels: covariance is rank-deficient"));
  }
  const double mean_diag = diag.mean();
  if (stats.tokens == 0 || !(mean_diag > 0)) {
    scaling.info.identity_fallback = true;
    AppendNote(scaling.info, "no calibration signal; used plain SVD");
    return scaling;
  }

  if (options.method == Method::kAsvd) {
    // diag(mean|x|^0.5); inactive channels get 0 (never inverted).
    scaling.diagonal = stats.mean_abs.cwiseMax(0.0).cwiseSqrt();
    return scaling;
  }

  // pca: the principal axes of the outputs X·W are the eigenvectors of
  // WᵀCW, i.e. care's right singular vectors with no damping (exact
  // symmetric square root, rank deficiency clamped).
  const bool pca = options.method == Method::kPca;
  scaling.info.damping_added = pca ? 0 : options.damping * mean_diag;
  if (!factor && options.method != Method::kCareC) {
    scaling.deferred = true;  // S·W only through WᵀCW + δ·WᵀW
    return scaling;
  }
  Eigen::MatrixXd damped = c;
  damped.diagonal().array() += scaling.info.damping_added;
  if (options.method == Method::kCareC) {
    // S = C itself (symmetric, SᵀS = C²); no factorization needed.
    scaling.dense = std::move(damped);
    return scaling;
  }
  if (!pca && options.solver == WhiteningSolver::kCholesky) {
    CholeskyFactor(std::move(damped), mean_diag, scaling);
  } else {
    EigenFactor(damped, scaling);
  }
  return scaling;
}

}  // namespace

double Decomposition::TotalEnergy() const {
  return singular_values.squaredNorm();
}

double Decomposition::TailEnergy(int64_t rank) const {
  const int64_t n = singular_values.size();
  if (rank >= n) return 0;
  rank = std::max<int64_t>(rank, 0);
  return singular_values.tail(n - rank).squaredNorm();
}

absl::StatusOr<Decomposition> Decompose(const Scaling& scaling,
                                        const Eigen::Ref<const MatrixRM>& w) {
  if (w.rows() != scaling.dim && scaling.dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat("projection has ", w.rows(),
                                                   " input rows, calibration "
                                                   "statistics have width ",
                                                   scaling.dim));
  }
  if (!w.allFinite()) {
    return absl::InvalidArgumentError(
        "projection weight has a non-finite value");
  }
  if (scaling.deferred) {
    return absl::FailedPreconditionError(
        "Decompose: the scaling was deferred to the Gram route "
        "(ScalingInfoOnly); use DecomposeGram");
  }
  const Eigen::MatrixXd m = scaling.Apply(w.cast<double>());  // [D, out]
  Decomposition out;
  if (m.cols() > m.rows()) {
    // Wider than tall (g·d_h > D, not seen in practice): plain thin SVD.
    Eigen::BDCSVD<Eigen::MatrixXd> svd(m, Eigen::ComputeThinV);
    if (svd.info() != Eigen::Success) {
      return absl::InternalError(
          "SVD of the scaled projection did not converge");
    }
    out.singular_values = svd.singularValues();  // [D]
    out.right_vectors = svd.matrixV();           // [out, D]
    return out;
  }
  // The right singular vectors and values of M are the eigenpairs of its
  // [out, out] Gram MᵀM (σ² = λ): a GEMM and an out×out eigenproblem instead
  // of a thin SVD of [D, out] (~5x faster at D = 4096, out = 1024). Squaring
  // costs relative accuracy only for σ below ~1e-8·σ_max, whose energy is
  // far below the float32 factors' rounding.
  // Full GEMM (Eigen parallelises it; its SYRK is single-threaded).
  return DecomposeGram(m.transpose() * m);  // [out, out] MᵀM
}

absl::StatusOr<Decomposition> DecomposeGram(const Eigen::MatrixXd& gram) {
  if (gram.rows() != gram.cols() || !gram.allFinite()) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecomposeGram: the Gram is ", gram.rows(), "x",
                     gram.cols(), " (must be square and finite)"));
  }
  Decomposition out;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  if (eig.info() != Eigen::Success) {
    return absl::InternalError(
        "eigendecomposition of the scaled projection's Gram did not converge");
  }
  const int64_t n = gram.cols();
  out.singular_values.resize(n);
  out.right_vectors.resize(n, n);
  for (int64_t i = 0; i < n; ++i) {  // ascending -> descending
    out.singular_values(i) =
        std::sqrt(std::max(eig.eigenvalues()(n - 1 - i), 0.0));
    out.right_vectors.col(i) = eig.eigenvectors().col(n - 1 - i);
  }
  return out;
}

absl::StatusOr<Factors> Truncate(const Decomposition& decomposition,
                                 const Eigen::Ref<const MatrixRM>& w,
                                 int64_t rank) {
  if (rank < 1 || rank > decomposition.max_rank()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", rank, " out of range [1, ", decomposition.max_rank(), "]"));
  }
  const Eigen::MatrixXd v_r =
      decomposition.right_vectors.leftCols(rank);  // [out, r]
  Factors f;
  f.w_down = (w.cast<double>() * v_r).cast<float>();  // [D, r]
  f.w_up = v_r.transpose().cast<float>();             // [r, out]
  const double total = decomposition.TotalEnergy();
  f.tail_energy = decomposition.TailEnergy(rank);
  f.retained_energy = total > 0 ? 1.0 - f.tail_energy / total : 1.0;
  return f;
}

double RelativeActivationError(const Eigen::MatrixXd& covariance,
                               const Eigen::Ref<const MatrixRM>& w,
                               const Factors& factors) {
  const Eigen::MatrixXd wd = w.cast<double>();  // [D, out]
  const Eigen::MatrixXd delta =
      wd - factors.w_down.cast<double>() * factors.w_up.cast<double>();
  const double err = (delta.transpose() * covariance * delta).trace();
  const double ref = (wd.transpose() * covariance * wd).trace();
  if (!(ref > 0)) return 0;
  return std::max(err, 0.0) / ref;
}

}  // namespace care::convert
