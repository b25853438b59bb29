#include "care/convert/mla_export/nope_scale.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::convert::mla {
namespace {

// One head's calibration attention: per causal (p, t ≤ p) pair, in row
// order, the source's log-probability and the export's two logit parts.
struct HeadScores {
  std::vector<float> log_a, pe, nope;
  std::vector<int64_t> row_start;  // [rows + 1] offsets
};

// Σ_rows KL(softmax(S_pe + γ·S_nope) ‖ a): per row, with w = exp(z − max)
// and p̂ = w / Σw, KL = Σ p̂·(z − lse − log a) (one exp per pair).
double ReverseKl(const HeadScores& s, double gamma) {
  double out = 0;
  std::vector<double> z, w;
  for (size_t r = 0; r + 1 < s.row_start.size(); ++r) {
    const int64_t b = s.row_start[r], e = s.row_start[r + 1];
    z.resize(e - b);
    w.resize(e - b);
    double mx = -INFINITY;
    for (int64_t i = b; i < e; ++i) {
      z[i - b] = s.pe[i] + gamma * s.nope[i];
      mx = std::max(mx, z[i - b]);
    }
    double sum = 0, dot = 0;
    for (int64_t i = b; i < e; ++i) {
      w[i - b] = std::exp(z[i - b] - mx);
      sum += w[i - b];
      dot += w[i - b] * (z[i - b] - s.log_a[i]);
    }
    out += dot / sum - mx - std::log(sum);
  }
  return out;
}

// argmin of ReverseKl over [0, kMaxNopeScale]: it need not be convex in γ,
// so a grid of kScaleGrid steps, then a golden-section search in the
// best point's neighbourhood.
double Minimise(const HeadScores& s) {
  constexpr int kScaleGrid = 10;
  const double step = kMaxNopeScale / kScaleGrid;
  double best = 0, best_v = INFINITY;
  for (int i = 0; i <= kScaleGrid; ++i) {
    const double v = ReverseKl(s, i * step);
    if (v < best_v) {
      best_v = v;
      best = i * step;
    }
  }
  const double phi = 0.5 * (std::sqrt(5.0) - 1);
  double lo = std::max(0.0, best - step),
         hi = std::min(kMaxNopeScale, best + step);
  double x1 = hi - phi * (hi - lo), x2 = lo + phi * (hi - lo);
  double f1 = ReverseKl(s, x1), f2 = ReverseKl(s, x2);
  for (int it = 0; it < 10; ++it) {
    if (f1 < f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - phi * (hi - lo);
      f1 = ReverseKl(s, x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + phi * (hi - lo);
      f2 = ReverseKl(s, x2);
    }
  }
  const double refined = f1 < f2 ? x1 : x2;
  return std::min(f1, f2) < best_v ? refined : best;
}

}  // namespace

absl::StatusOr<NopeScale> FitNopeScale(const NopeCorrectionInputs& in,
                                       const std::vector<Eigen::Matrix2d>& m,
                                       const Eigen::Ref<const MatrixRM>& x) {
  CARE_RETURN_IF_ERROR(CheckNopeInputs(in, x, "nope scale"));
  const int64_t dh = in.rope->shape.head_dim, half = dh / 2;
  const int64_t g = in.rope->shape.num_kv_heads, n_h = in.num_heads;
  const int64_t t_len = in.seq_len;
  if (static_cast<int64_t>(m.size()) != n_h * half) {
    return absl::InvalidArgumentError(
        absl::StrCat("nope scale: ", m.size(), " maps for ", n_h, " heads of ",
                     half, " frequencies"));
  }
  const int64_t group = n_h / g, windows = x.rows() / t_len;
  const Eigen::MatrixXd wq =
      in.w_q->cast<double>().transpose();             // [D, n_h·d_h]
  const Eigen::MatrixXd wk = in.w_k->cast<double>();  // [D, g·d_h]
  const Eigen::MatrixXd pi = in.rope->Projector();    // [g·d_h]²
  // The corrected q rows: per head and pair, q̃_f = M_fᵀ·q_f.
  Eigen::MatrixXd wq_nope = wq;  // [D, n_h·d_h]
  for (int64_t h = 0; h < n_h; ++h) {
    for (int64_t f = 0; f < half; ++f) {
      const Eigen::Matrix2d& mf = m[h * half + f];
      const Eigen::VectorXd u = wq.col(h * dh + f),
                            v = wq.col(h * dh + f + half);
      wq_nope.col(h * dh + f) = mf(0, 0) * u + mf(1, 0) * v;
      wq_nope.col(h * dh + f + half) = mf(0, 1) * u + mf(1, 1) * v;
    }
  }
  const WindowRope rope = MakeWindowRope(in.inv_freq, t_len);
  const double inv_sqrt = 1.0 / std::sqrt(static_cast<double>(dh));
  NopeScale out;
  out.gamma.resize(n_h);
  const double rows = static_cast<double>(n_h * windows * t_len);
  // One head at a time: its [windows·T·(T+1)/2] pairs are all it keeps.
  for (int64_t h = 0; h < n_h; ++h) {
    const int64_t j = h / group;
    HeadScores hs;
    const size_t pairs = windows * t_len * (t_len + 1) / 2;
    hs.log_a.reserve(pairs);
    hs.pe.reserve(pairs);
    hs.nope.reserve(pairs);
    hs.row_start.reserve(windows * t_len + 1);
    hs.row_start.push_back(0);
    for (int64_t w = 0; w < windows; ++w) {
      const Eigen::MatrixXd xw = x.middleRows(w * t_len, t_len).cast<double>();
      const Eigen::MatrixXd q = xw * wq.middleCols(h * dh, dh);  // [T, d_h]
      const Eigen::MatrixXd qn =
          xw * wq_nope.middleCols(h * dh, dh);  // [T, d_h] corrected
      const Eigen::MatrixXd k = xw * wk;        // [T, g·d_h]
      const Eigen::MatrixXd kp = k * pi;        // [T, g·d_h] kept part
      const Eigen::MatrixXd kn =
          (k - kp).middleCols(j * dh, dh);  // [T, d_h] NoPE part
      const Eigen::MatrixXd qr = rope.Apply(q, 1);
      const Eigen::MatrixXd kr = rope.Apply(k.middleCols(j * dh, dh), 1);
      const Eigen::MatrixXd kpr = rope.Apply(kp.middleCols(j * dh, dh), 1);
      // [T, T] source logits, export RoPE part, export NoPE part.
      const Eigen::MatrixXd s = qr * kr.transpose() * inv_sqrt;
      const Eigen::MatrixXd s_pe = qr * kpr.transpose() * inv_sqrt;
      const Eigen::MatrixXd s_nope = qn * kn.transpose() * inv_sqrt;
      for (int64_t p = 0; p < t_len; ++p) {
        const double mx = s.row(p).head(p + 1).maxCoeff();
        double z = 0;
        for (int64_t t = 0; t <= p; ++t) z += std::exp(s(p, t) - mx);
        const double lse = mx + std::log(z);
        for (int64_t t = 0; t <= p; ++t) {
          hs.log_a.push_back(static_cast<float>(s(p, t) - lse));
          hs.pe.push_back(static_cast<float>(s_pe(p, t)));
          hs.nope.push_back(static_cast<float>(s_nope(p, t)));
        }
        hs.row_start.push_back(static_cast<int64_t>(hs.log_a.size()));
      }
    }
    const double before = ReverseKl(hs, 1.0);
    double gamma = Minimise(hs);
    double after = ReverseKl(hs, gamma);
    if (!(after <= before)) {  // never worse than the correction alone
      gamma = 1;
      after = before;
    }
    out.gamma[h] = gamma;
    out.kl_unscaled += before / rows;
    out.kl_scaled += after / rows;
  }
  return out;
}

int64_t NopeScaleWindow(int64_t span, int64_t max_positions,
                        int64_t calib_seq_len, int64_t calib_tokens) {
  int64_t len = std::min(span, calib_tokens);
  if (max_positions > 0) len = std::min(len, max_positions);
  if (calib_seq_len < 1) return std::max<int64_t>(len, 1);
  return std::max(calib_seq_len, len / calib_seq_len * calib_seq_len);
}

void ApplyNopeScale(const NopeScale& scale, int64_t head_dim,
                    std::vector<Eigen::Matrix2d>& m) {
  const int64_t half = head_dim / 2;
  for (size_t h = 0; h < scale.gamma.size(); ++h) {
    for (int64_t f = 0; f < half; ++f) m[h * half + f] *= scale.gamma[h];
  }
}

}  // namespace care::convert::mla
