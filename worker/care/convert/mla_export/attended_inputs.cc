#include "care/convert/mla_export/attended_inputs.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/causal_softmax.h"

namespace care::convert::mla {
absl::StatusOr<std::vector<Eigen::MatrixXd>> AttendedInputMoments(
    const NopeCorrectionInputs& in, const Eigen::Ref<const MatrixRM>& x) {
  CARE_RETURN_IF_ERROR(CheckNopeInputs(in, x, "attended inputs"));
  const int64_t dh = in.rope->shape.head_dim;
  const int64_t g = in.rope->shape.num_kv_heads, n_h = in.num_heads;
  const int64_t d = x.cols(), t_len = in.seq_len;
  if (x.rows() < t_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("attended inputs: ", x.rows(),
                     " rows, less than one window of ", t_len));
  }
  const int64_t group = n_h / g, windows = x.rows() / t_len;
  const Eigen::MatrixXd wq =
      in.w_q->cast<double>().transpose();             // [D, n_h·d_h]
  const Eigen::MatrixXd wk = in.w_k->cast<double>();  // [D, g·d_h]
  const WindowRope rope = MakeWindowRope(in.inv_freq, t_len);
  const double inv_sqrt = 1.0 / std::sqrt(static_cast<double>(dh));
  std::vector<Eigen::MatrixXd> out(g, Eigen::MatrixXd::Zero(d, d));
  for (int64_t w = 0; w < windows; ++w) {
    const Eigen::MatrixXd xw = x.middleRows(w * t_len, t_len).cast<double>();
    const Eigen::MatrixXd q = xw * wq;  // [T, n_h·d_h]
    const Eigen::MatrixXd k = xw * wk;  // [T, g·d_h]
    for (int64_t j = 0; j < g; ++j) {
      const Eigen::MatrixXd kr = rope.Apply(k.middleCols(j * dh, dh), 1);
      // Σ_h aᵀ·a over the group [T, T]: x̄ᵀx̄ summed = xwᵀ·(Σ aᵀa)·xw.
      Eigen::MatrixXd ata = Eigen::MatrixXd::Zero(t_len, t_len);
      for (int64_t h = j * group; h < (j + 1) * group; ++h) {
        const Eigen::MatrixXd qr = rope.Apply(q.middleCols(h * dh, dh), 1);
        Eigen::MatrixXd a = qr * kr.transpose() * inv_sqrt;  // [T, T] logits
        CausalSoftmax(a);  // [T, T] probabilities
        ata.noalias() += a.transpose() * a;
      }
      out[j].noalias() += xw.transpose() * ata * xw;  // [D, D]
    }
  }
  const double scale = 1.0 / static_cast<double>(group * windows * t_len);
  for (Eigen::MatrixXd& c : out) c *= scale;
  return out;
}

}  // namespace care::convert::mla
