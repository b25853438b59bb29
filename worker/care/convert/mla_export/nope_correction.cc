#include "care/convert/mla_export/nope_correction.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/causal_softmax.h"

namespace care::convert::mla {

WindowRope MakeWindowRope(const std::vector<double>& inv_freq,
                          int64_t seq_len) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  WindowRope r{Eigen::MatrixXd(seq_len, half), Eigen::MatrixXd(seq_len, half)};
  for (int64_t p = 0; p < seq_len; ++p) {
    for (int64_t f = 0; f < half; ++f) {
      r.cos(p, f) = std::cos(p * inv_freq[f]);
      r.sin(p, f) = std::sin(p * inv_freq[f]);
    }
  }
  return r;
}

Eigen::MatrixXd WindowRope::Apply(const Eigen::MatrixXd& m,
                                  int64_t heads) const {
  const int64_t half = cos.cols(), dh = 2 * half;
  Eigen::MatrixXd r = m;
  for (int64_t p = 0; p < m.rows(); ++p) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t f = 0; f < half; ++f) {
        const double u = m(p, h * dh + f), v = m(p, h * dh + f + half);
        r(p, h * dh + f) = u * cos(p, f) - v * sin(p, f);
        r(p, h * dh + f + half) = v * cos(p, f) + u * sin(p, f);
      }
    }
  }
  return r;
}

absl::Status CheckNopeInputs(const NopeCorrectionInputs& in,
                             const Eigen::Ref<const MatrixRM>& x,
                             absl::string_view what) {
  if (in.w_q == nullptr || in.w_k == nullptr || in.rope == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing inputs"));
  }
  const int64_t dh = in.rope->shape.head_dim, half = dh / 2;
  const int64_t g = in.rope->shape.num_kv_heads, n_h = in.num_heads;
  const int64_t d = x.cols(), t_len = in.seq_len;
  if (n_h < 1 || g < 1 || n_h % g != 0 || in.w_q->rows() != n_h * dh ||
      in.w_q->cols() != d || in.w_k->rows() != d || in.w_k->cols() != g * dh ||
      static_cast<int64_t>(in.inv_freq.size()) != half || t_len < 1 ||
      x.rows() % t_len != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": inconsistent shapes (q_proj ", in.w_q->rows(), "x",
        in.w_q->cols(), ", k ", in.w_k->rows(), "x", in.w_k->cols(), ", x ",
        x.rows(), "x", d, ", seq_len ", t_len, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NopeCorrection> FitNopeCorrection(
    const NopeCorrectionInputs& in, const Eigen::Ref<const MatrixRM>& x) {
  CARE_RETURN_IF_ERROR(CheckNopeInputs(in, x, "nope correction"));
  const int64_t dh = in.rope->shape.head_dim, half = dh / 2;
  const int64_t g = in.rope->shape.num_kv_heads, n_h = in.num_heads;
  const int64_t t_len = in.seq_len;
  const int64_t group = n_h / g, windows = x.rows() / t_len;
  const int64_t cells = n_h * half;
  std::vector<Eigen::Matrix4d> a(cells, Eigen::Matrix4d::Zero());
  std::vector<Eigen::Vector4d> b(cells, Eigen::Vector4d::Zero());
  std::vector<double> target(cells, 0.0);  // Σ w·y²

  const Eigen::MatrixXd wq =
      in.w_q->cast<double>().transpose();             // [D, n_h·d_h]
  const Eigen::MatrixXd wk = in.w_k->cast<double>();  // [D, g·d_h]
  const Eigen::MatrixXd nope =
      Eigen::MatrixXd::Identity(g * dh, g * dh) - in.rope->Projector();
  const double inv_sqrt = 1.0 / std::sqrt(static_cast<double>(dh));
  const WindowRope rope = MakeWindowRope(in.inv_freq, t_len);
  for (int64_t w = 0; w < windows; ++w) {
    const Eigen::MatrixXd xw = x.middleRows(w * t_len, t_len).cast<double>();
    const Eigen::MatrixXd q = xw * wq;    // [T, n_h·d_h]
    const Eigen::MatrixXd k = xw * wk;    // [T, g·d_h]
    const Eigen::MatrixXd kn = k * nope;  // [T, g·d_h], NoPE part
    const Eigen::MatrixXd qr = rope.Apply(q, n_h), kr = rope.Apply(k, g);
    for (int64_t h = 0; h < n_h; ++h) {
      const int64_t j = h / group;
      // Causal attention probabilities of the source, [T, T].
      Eigen::MatrixXd s = qr.middleCols(h * dh, dh) *
                          kr.middleCols(j * dh, dh).transpose() * inv_sqrt;
      CausalSoftmax(s);
      for (int64_t p = 0; p < t_len; ++p) {
        for (int64_t t = 0; t <= p; ++t) {
          const double wt = s(p, t);
          const int64_t delta = p - t;
          for (int64_t f = 0; f < half; ++f) {
            const double q0 = q(p, h * dh + f), q1 = q(p, h * dh + f + half);
            const double k0 = kn(t, j * dh + f), k1 = kn(t, j * dh + f + half);
            const double c = std::cos(delta * in.inv_freq[f]);
            const double sv = std::sin(delta * in.inv_freq[f]);
            // Source: qᵀ·R(−Δθ)·k̃ with R(−Δθ) = [[c, s], [−s, c]].
            const double y = q0 * (c * k0 + sv * k1) + q1 * (-sv * k0 + c * k1);
            const Eigen::Vector4d phi(q0 * k0, q0 * k1, q1 * k0, q1 * k1);
            const int64_t cell = h * half + f;
            a[cell].noalias() += wt * phi * phi.transpose();
            b[cell].noalias() += wt * y * phi;
            target[cell] += wt * y * y;
          }
        }
      }
    }
  }
  NopeCorrection out;
  out.m.resize(cells);
  const Eigen::Vector4d identity(1, 0, 0, 1);
  double total = 0, dropped = 0, corrected = 0;
  for (int64_t cell = 0; cell < cells; ++cell) {
    const Eigen::Matrix4d& ac = a[cell];
    const double ridge = 1e-9 * ac.trace() / 4 + 1e-300;
    Eigen::Vector4d m =
        (ac + ridge * Eigen::Matrix4d::Identity()).ldlt().solve(b[cell]);
    auto err = [&](const Eigen::Vector4d& v) {
      return std::max(target[cell] - 2 * v.dot(b[cell]) + v.dot(ac * v), 0.0);
    };
    if (!m.allFinite() || err(m) > err(identity)) m = identity;
    out.m[cell] << m(0), m(1), m(2), m(3);
    total += target[cell];
    dropped += err(identity);
    corrected += err(m);
  }
  if (total > 0) {
    out.dropped_error = dropped / total;
    out.corrected_error = corrected / total;
  }
  return out;
}

MatrixRM CorrectedQueryProjection(const NopeCorrection& c, int64_t head_dim,
                                  MatrixRM q_rows) {
  if (c.m.empty()) return q_rows;
  for (int64_t h = 0; h < q_rows.rows() / head_dim; ++h) {
    MatrixRM rows = q_rows.middleRows(h * head_dim, head_dim);  // [d_h, D]
    CorrectQueryRows(c, h, head_dim, rows);
    q_rows.middleRows(h * head_dim, head_dim) = rows;
  }
  return q_rows;
}

void CorrectQueryRows(const NopeCorrection& c, int64_t head, int64_t head_dim,
                      MatrixRM& rows) {
  const int64_t half = head_dim / 2;
  for (int64_t f = 0; f < half; ++f) {
    const Eigen::Matrix2d& m = c.m[head * half + f];
    const Eigen::RowVectorXf u = rows.row(f), v = rows.row(f + half);
    // q' = Mᵀ·q on the pair (f, f + d_h/2).
    rows.row(f) =
        static_cast<float>(m(0, 0)) * u + static_cast<float>(m(1, 0)) * v;
    rows.row(f + half) =
        static_cast<float>(m(0, 1)) * u + static_cast<float>(m(1, 1)) * v;
  }
}

}  // namespace care::convert::mla
