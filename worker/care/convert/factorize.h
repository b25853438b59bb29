// Activation-preserving low-rank factorization of one projection W ([D, out],
// K = X·W, W = k_proj.weightᵀ), method.md §2 and docs/conversion.md.
//
// Every method is "SVD of a scaled operator S·W, keep the top r right singular
// vectors": care (SᵀS = C, the activation-error optimum), care-c (S = C),
// asvd (S = diag(mean|x|^0.5)), svd (S = I). The rank-r result is
//   Ŵ = S⁻¹·U_r·Σ_r·V_rᵀ = W·V_r·V_rᵀ     (since U_r·Σ_r = S·W·V_r),
// so W_down = W·V_r [D, r] and W_up = V_rᵀ [r, out]. Writing it this way never
// inverts S: a rank-deficient C, a zero channel or a tiny sample cannot
// produce NaN, and full rank reproduces W exactly for every method.
#ifndef CARE_CONVERT_FACTORIZE_H_
#define CARE_CONVERT_FACTORIZE_H_

#include <Eigen/Core>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/tensor.h"

namespace care::convert {

// kPca: TransMLA's PCA of the outputs X·W (eigenvectors of WᵀCW); it
// minimises the same activation error as care and equals care at damping 0.
enum class Method { kCare, kCareC, kAsvd, kSvd, kPca };

// "care", "care-c", "asvd", "svd", "pca"; InvalidArgument listing them
// otherwise.
absl::StatusOr<Method> ParseMethod(absl::string_view name);
std::string MethodName(Method method);
// Whether the method reads calibration statistics (svd does not).
bool MethodUsesData(Method method);

// How a care whitening factor S (SᵀS = C) is formed. Both give the same
// singular values and the same rank-r Ŵ; Cholesky is ~10x cheaper.
enum class WhiteningSolver { kCholesky, kEigen };

struct FactorizeOptions {
  Method method = Method::kCare;
  // Additive ridge: C ← C + damping·mean(diag C)·I (see docs/conversion.md
  // for why additive; the paper's convex form with α equals additive with
  // α/(1−α) up to a scale that does not change Ŵ).
  double damping = 0.01;
  WhiteningSolver solver = WhiteningSolver::kCholesky;
};

// Calibration statistics of one layer's k/v input (shared by K and V).
struct LayerStatistics {
  Eigen::MatrixXd covariance;  // [D, D] C = (1/N) Σ xᵀx
  Eigen::VectorXd mean_abs;    // [D] (1/N) Σ |x|
  int64_t tokens = 0;
  // [D] diag C, set instead of `covariance` where only the Gram route runs
  // (ScalingInfoOnly needs the diagonal alone; BuildScaling refuses it).
  Eigen::VectorXd diagonal{};
};

// What happened while forming S; reported per layer.
struct ScalingInfo {
  double damping_added = 0;         // absolute ridge added to diag C
  double jitter_added = 0;          // further ridge the Cholesky needed
  int64_t clamped_eigenvalues = 0;  // eigen solver: λ ≤ 1e-12·λ_max set to 0
  int64_t zero_channels = 0;        // channels with diag C == 0
  bool identity_fallback = false;  // no usable data: plain SVD was used
  std::string note;                // human-readable summary, "" when clean
};

// The scaling S of a layer: dense [D, D], or diagonal [D] (asvd), or none.
struct Scaling {
  Method method = Method::kSvd;
  int64_t dim = 0;
  Eigen::MatrixXd dense;     // [D, D] when non-empty
  Eigen::VectorXd diagonal;  // [D] when non-empty
  // ScalingInfoOnly: S exists only implicitly (Gram route); Decompose
  // refuses it.
  bool deferred = false;
  ScalingInfo info;

  // S·W for W [D, out] -> [D, out].
  Eigen::MatrixXd Apply(const Eigen::MatrixXd& w) const;
};

// Builds S for `options.method` from the layer statistics (ignored for svd).
// InvalidArgument on a non-finite or mis-shaped covariance or a negative
// damping; everything else (rank deficiency, zero C) degrades and is noted.
absl::StatusOr<Scaling> BuildScaling(const LayerStatistics& stats,
                                     const FactorizeOptions& options);

// Whether a decomposition for `options` may come from Gram matrices alone
// (DecomposeGram): care with damping > 0, where (S·W)ᵀ(S·W) = Wᵀ(C + δI)W
// for every SᵀS = C + δI, so neither the Cholesky (or eigen) factor of the
// [D, D] covariance nor the [D, D]·[D, out] product S·W is needed. With
// damping 0, C may be singular: the factored route and its jitter apply.
bool GramRouteApplies(const FactorizeOptions& options);

// BuildScaling's checks and notes without forming S, for the Gram route:
// `dense` stays empty and `deferred` is set, unless there is no
// calibration signal (identity fallback: plain SVD, as BuildScaling).
absl::StatusOr<Scaling> ScalingInfoOnly(const LayerStatistics& stats,
                                        const FactorizeOptions& options);

// Full SVD spectrum of S·W for one projection.
struct Decomposition {
  Eigen::VectorXd singular_values;  // [min(D, out)], descending
  Eigen::MatrixXd right_vectors;    // [out, min(D, out)] V

  int64_t max_rank() const { return singular_values.size(); }
  double TotalEnergy() const;             // Σ σ²
  double TailEnergy(int64_t rank) const;  // Σ_{i>rank} σ²
};

// W is [D, out] (= weight.transpose()).
absl::StatusOr<Decomposition> Decompose(const Scaling& scaling,
                                        const Eigen::Ref<const MatrixRM>& w);

// The decomposition of any M with MᵀM = gram ([out, out], out <= D): the
// eigenpairs of the Gram, descending, σ = sqrt(max(λ, 0)). Decompose's own
// last step; for care: gram = WᵀCW + δ·WᵀW (GramRouteApplies).
absl::StatusOr<Decomposition> DecomposeGram(const Eigen::MatrixXd& gram);

struct Factors {
  MatrixRM w_down;  // [D, r]; X·W_down is the cached latent
  MatrixRM w_up;    // [r, out]
  // In the method's scaled norm ‖S·(W − Ŵ)‖²: for care with damping 0 the
  // tail is exactly the calibration activation error per token.
  double tail_energy = 0;      // Σ_{i>r} σ²
  double retained_energy = 1;  // Σ_{i≤r} σ² / Σ σ² (1 when Σ σ² = 0)
};

// The rank-r factors; InvalidArgument unless 1 <= rank <= max_rank().
absl::StatusOr<Factors> Truncate(const Decomposition& decomposition,
                                 const Eigen::Ref<const MatrixRM>& w,
                                 int64_t rank);

// ‖X(W − Ŵ)‖² / ‖XW‖² = tr(ΔᵀCΔ) / tr(WᵀCW) with Ŵ = W_down·W_up, for a
// covariance C of any token set (held-out tokens in the report). 0 when
// tr(WᵀCW) == 0 and Δ vanishes on C; never NaN.
double RelativeActivationError(const Eigen::MatrixXd& covariance,
                               const Eigen::Ref<const MatrixRM>& w,
                               const Factors& factors);

}  // namespace care::convert

#endif  // CARE_CONVERT_FACTORIZE_H_
