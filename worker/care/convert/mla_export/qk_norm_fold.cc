#include "care/convert/mla_export/qk_norm_fold.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>

#include "base/status_macros.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

// Rows per block of the regression's moments: bounds the [rows, heads·d_h]
// temporaries at 8B shape (4096 query dims) to ~32 MiB.
constexpr int64_t kBlockRows = 1024;

// s_h for every head of y = x·Wᵀ ([N, heads·d_h]) with norm weight w [d_h];
// returns the per-dimension multipliers [heads·d_h] and s [heads].
void FitHeads(const Eigen::MatrixXd& y, const Eigen::VectorXd& w, int64_t heads,
              int64_t dh, double eps, Eigen::VectorXf* fold,
              Eigen::VectorXd* scale) {
  fold->resize(heads * dh);
  scale->resize(heads);
  for (int64_t h = 0; h < heads; ++h) {
    double num = 0, den = 0;
    for (int64_t t = 0; t < y.rows(); ++t) {
      const auto q = y.row(t).segment(h * dh, dh);
      const double rms = std::sqrt(q.squaredNorm() / dh + eps);
      const double e = q.cwiseProduct(w.transpose()).squaredNorm();
      num += e / rms;
      den += e;
    }
    const double s = den > 0 ? num / den : 1.0;
    (*scale)(h) = s;
    fold->segment(h * dh, dh) = (s * w).cast<float>();
  }
}

// The regression fold of one projection: Bᵀ [out, D] with
// B = (C + λI)⁻¹(E[xᵀT] + λ·B₀), B₀ = (fold ⊙ W)ᵀ the scalar fold, T the
// normed heads of x·Wᵀ. x [N, D], w_proj [out, D] (PyTorch layout).
MatrixRM Regress(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w_proj,
                 const Eigen::VectorXd& w, int64_t heads, int64_t dh,
                 double eps, const Eigen::VectorXf& fold) {
  const int64_t d = x.cols(), out = w_proj.rows();
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(d, d);     // Σ xᵀx [D, D]
  Eigen::MatrixXd cross = Eigen::MatrixXd::Zero(d, out);  // Σ xᵀT [D, out]
  for (int64_t r0 = 0; r0 < x.rows(); r0 += kBlockRows) {
    const int64_t n = std::min(kBlockRows, x.rows() - r0);
    const auto xb = x.middleRows(r0, n);  // [n, D]
    gram.selfadjointView<Eigen::Lower>().rankUpdate(xb.transpose());
    cross += xb.transpose() *
             NormedHeads(xb * w_proj.transpose(), w, heads, dh, eps);
  }
  const double inv_n =
      1.0 / static_cast<double>(std::max<int64_t>(1, x.rows()));
  Eigen::MatrixXd c = gram.selfadjointView<Eigen::Lower>();
  c *= inv_n;  // C [D, D]
  cross *= inv_n;
  const double lambda =
      kQkFoldRidge * std::max(c.trace() / static_cast<double>(d), 1e-30);
  const Eigen::MatrixXd b0 =
      (fold.cast<double>().asDiagonal() * w_proj).transpose();  // [D, out]
  c.diagonal().array() += lambda;
  const Eigen::MatrixXd b = c.llt().solve(cross + lambda * b0);  // [D, out]
  return b.transpose().cast<float>();
}

}  // namespace

Eigen::MatrixXd NormedHeads(const Eigen::MatrixXd& y, const Eigen::VectorXd& w,
                            int64_t heads, int64_t dh, double eps) {
  Eigen::MatrixXd t(y.rows(), heads * dh);  // [N, heads·d_h]
  for (int64_t i = 0; i < y.rows(); ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      const auto q = y.row(i).segment(h * dh, dh);
      const double inv_rms = 1.0 / std::sqrt(q.squaredNorm() / dh + eps);
      t.row(i).segment(h * dh, dh) = inv_rms * q.cwiseProduct(w.transpose());
    }
  }
  return t;
}

absl::StatusOr<QkNormFold> FitQkNormFold(const ModelConfig& c,
                                         const TensorSource& weights,
                                         int64_t layer,
                                         const Eigen::Ref<const MatrixRM>& x,
                                         bool regression) {
  const int64_t dh = c.head_dim, d = c.hidden_size;
  const int64_t n_h = c.num_attention_heads, g = c.num_key_value_heads;
  CARE_ASSIGN_OR_RETURN(
      Tensor q, LoadChecked(weights, io::names::QProj(layer), {n_h * dh, d}));
  CARE_ASSIGN_OR_RETURN(
      Tensor k, LoadChecked(weights, io::names::KProj(layer), {g * dh, d}));
  CARE_ASSIGN_OR_RETURN(Tensor qn,
                        LoadChecked(weights, io::names::QNorm(layer), {dh}));
  CARE_ASSIGN_OR_RETURN(Tensor kn,
                        LoadChecked(weights, io::names::KNorm(layer), {dh}));
  const Eigen::MatrixXd xd = x.cast<double>();           // [N, D]
  const Eigen::MatrixXd wq = q.matrix().cast<double>();  // [n_h·d_h, D]
  const Eigen::MatrixXd wk = k.matrix().cast<double>();  // [g·d_h, D]
  const Eigen::VectorXd qw = qn.matrix().cast<double>().row(0).transpose();
  const Eigen::VectorXd kw = kn.matrix().cast<double>().row(0).transpose();
  QkNormFold out;
  FitHeads(xd * wq.transpose(), qw, n_h, dh, c.rms_norm_eps, &out.q,
           &out.q_scale);
  FitHeads(xd * wk.transpose(), kw, g, dh, c.rms_norm_eps, &out.k,
           &out.k_scale);
  if (regression) {
    out.q_proj = Regress(xd, wq, qw, n_h, dh, c.rms_norm_eps, out.q);
    out.k_proj = Regress(xd, wk, kw, g, dh, c.rms_norm_eps, out.k);
  }
  return out;
}

}  // namespace care::convert::mla
