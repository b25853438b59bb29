#include "care/convert/mla_export/qk_norm_fold.h"

#include <cmath>

#include "base/status_macros.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

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

}  // namespace

absl::StatusOr<QkNormFold> FitQkNormFold(const ModelConfig& c,
                                         const TensorSource& weights,
                                         int64_t layer,
                                         const Eigen::Ref<const MatrixRM>& x) {
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
  const Eigen::MatrixXd xd = x.cast<double>();  // [N, D]
  QkNormFold out;
  FitHeads(xd * q.matrix().cast<double>().transpose(),
           qn.matrix().cast<double>().row(0).transpose(), n_h, dh,
           c.rms_norm_eps, &out.q, &out.q_scale);
  FitHeads(xd * k.matrix().cast<double>().transpose(),
           kn.matrix().cast<double>().row(0).transpose(), g, dh, c.rms_norm_eps,
           &out.k, &out.k_scale);
  return out;
}

}  // namespace care::convert::mla
