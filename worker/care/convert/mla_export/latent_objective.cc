#include "care/convert/mla_export/latent_objective.h"

#include <Eigen/Dense>
#include <algorithm>

#include "absl/strings/str_cat.h"

namespace care::convert::mla {
namespace {

// Symmetric PSD square root (eigenvalues below 0 from rounding clamp to 0).
Eigen::MatrixXd SqrtPsd(const Eigen::MatrixXd& m) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(m);
  const Eigen::VectorXd s = eig.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return eig.eigenvectors() * s.asDiagonal() * eig.eigenvectors().transpose();
}

}  // namespace

absl::StatusOr<AttentionMetric> BuildAttentionMetric(
    const MatrixRM& q_rows, const MatrixRM& o_proj,
    const Eigen::MatrixXd& covariance, int64_t num_kv_heads, int64_t head_dim) {
  const int64_t d = covariance.rows(), dh = head_dim, g = num_kv_heads;
  const int64_t n_h = dh > 0 ? q_rows.rows() / dh : 0;
  if (g < 1 || dh < 1 || n_h < 1 || n_h % g != 0 || q_rows.rows() != n_h * dh ||
      q_rows.cols() != d || covariance.cols() != d || o_proj.rows() != d ||
      o_proj.cols() != n_h * dh) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention objective: inconsistent shapes (q rows ", q_rows.rows(), "x",
        q_rows.cols(), ", o_proj ", o_proj.rows(), "x", o_proj.cols(),
        ", covariance ", covariance.rows(), "x", covariance.cols(), ", ", g,
        " KV heads of dim ", dh, ")"));
  }
  const int64_t group = n_h / g;
  AttentionMetric out;
  out.key_sqrt = Eigen::MatrixXd::Zero(g * dh, g * dh);
  out.value_sqrt = Eigen::MatrixXd::Zero(g * dh, g * dh);
  for (int64_t j = 0; j < g; ++j) {
    Eigen::MatrixXd m = Eigen::MatrixXd::Zero(dh, dh);  // Σ_h W̃_h·C·W̃_hᵀ
    Eigen::MatrixXd n = Eigen::MatrixXd::Zero(dh, dh);  // Σ_h O_hᵀ·O_h
    for (int64_t h = j * group; h < (j + 1) * group; ++h) {
      const Eigen::MatrixXd wq =
          q_rows.middleRows(h * dh, dh).cast<double>();  // [d_h, D]
      m.noalias() += wq * covariance * wq.transpose();
      const Eigen::MatrixXd o =
          o_proj.middleCols(h * dh, dh).cast<double>();  // [D, d_h]
      n.noalias() += o.transpose() * o;
    }
    out.key_sqrt.block(j * dh, j * dh, dh, dh) = SqrtPsd(m);
    out.value_sqrt.block(j * dh, j * dh, dh, dh) = SqrtPsd(n);
  }
  return out;
}

Eigen::MatrixXd RegressUp(const Eigen::MatrixXd& w_down,
                          const Eigen::MatrixXd& target,
                          const Eigen::MatrixXd& covariance, double ridge) {
  const int64_t d = covariance.rows();
  const double mean_diag = d > 0 ? covariance.trace() / d : 0.0;
  const Eigen::MatrixXd cd =
      covariance + ridge * mean_diag * Eigen::MatrixXd::Identity(d, d);
  const Eigen::MatrixXd cw = cd * w_down;          // [D, r]
  Eigen::MatrixXd gram = w_down.transpose() * cw;  // [r, r]
  // A latent direction with no calibration energy gets a zero row, not NaN.
  gram.diagonal().array() += 1e-12 * std::max(gram.trace(), 1e-300);
  return gram.ldlt().solve(cw.transpose() * target);  // [r, out]
}

}  // namespace care::convert::mla
