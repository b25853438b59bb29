#include "care/convert/mla_export/heal_layer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/causal_softmax.h"
#include "care/convert/mla_export/heal_schedule.h"

namespace care::convert::mla {
namespace {

// Rotates the interleaved pairs of `heads` blocks of width R per row by
// position·θ (sign +1) or back (sign −1); row i is position i mod T.
template <typename S>
void RotatePairs(const HealAttention<S>& a, int64_t heads, S sign,
                 HealMatrix<S>& m) {  // [W·T, heads·R]
  const int64_t r = a.shape.rope_dim, half = r / 2, t_len = a.seq_len;
  for (int64_t row = 0; row < m.rows(); ++row) {
    const int64_t pos = row % t_len;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < half; ++i) {
        const S c = a.cos(pos, i), s = sign * a.sin(pos, i);
        S& u = m(row, h * r + 2 * i);
        S& v = m(row, h * r + 2 * i + 1);
        const S u0 = u, v0 = v;
        u = u0 * c - v0 * s;
        v = v0 * c + u0 * s;
      }
    }
  }
}

}  // namespace

template <typename S>
HealMatrix<S>& HealParams<S>::block(int i) {
  switch (i) {
    case 0:
      return q_nope;
    case 1:
      return q_pe;
    case 2:
      return w_down;
    case 3:
      return w_pe;
    case 4:
      return up_k;
    default:
      return up_v;
  }
}

template <typename S>
const HealMatrix<S>& HealParams<S>::block(int i) const {
  return const_cast<HealParams<S>*>(this)->block(i);
}

template <typename S>
HealParams<S> HealParams<S>::ZerosLike() const {
  HealParams<S> z;
  for (int i = 0; i < kBlocks; ++i) {
    z.block(i).setZero(block(i).rows(), block(i).cols());
  }
  return z;
}

template <typename S>
absl::Status CheckHealShapes(const HealAttention<S>& a,
                             const HealParams<S>& p) {
  const HealShape& s = a.shape;
  const int64_t hd = s.num_heads * s.head_dim;
  auto check = [](const HealMatrix<S>& m, int64_t rows, int64_t cols,
                  const char* name) -> absl::Status {
    if (m.rows() == rows && m.cols() == cols) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("healing: ", name, " is [", m.rows(), ", ", m.cols(),
                     "], expected [", rows, ", ", cols, "]"));
  };
  if (s.num_heads < 1 || s.head_dim < 1 || s.rope_dim < 2 ||
      s.rope_dim % 2 != 0 || s.rank < 1 || s.hidden < 1 || a.seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing: bad shape (heads ", s.num_heads, ", head_dim ",
                     s.head_dim, ", rope_dim ", s.rope_dim, ", rank ", s.rank,
                     ", hidden ", s.hidden, ", seq_len ", a.seq_len, ")"));
  }
  CARE_RETURN_IF_ERROR(check(p.q_nope, hd, s.hidden, "q_nope"));
  CARE_RETURN_IF_ERROR(
      check(p.q_pe, s.num_heads * s.rope_dim, s.hidden, "q_pe"));
  CARE_RETURN_IF_ERROR(check(p.w_down, s.hidden, s.rank, "w_down"));
  CARE_RETURN_IF_ERROR(check(p.w_pe, s.rope_dim, s.hidden, "w_pe"));
  CARE_RETURN_IF_ERROR(check(p.up_k, s.rank, hd, "up_k"));
  CARE_RETURN_IF_ERROR(check(p.up_v, s.rank, hd, "up_v"));
  CARE_RETURN_IF_ERROR(check(a.cos, a.seq_len, s.rope_dim / 2, "cos"));
  CARE_RETURN_IF_ERROR(check(a.sin, a.seq_len, s.rope_dim / 2, "sin"));
  return check(a.o_proj, s.hidden, hd, "o_proj");
}

namespace {

// The forward pass, with what the backward needs.
template <typename S>
struct Forward {
  HealMatrix<S> qn, qp, c, kp, kn, v;  // projections (qp, kp rotated)
  HealMatrix<S> o;                     // [N, n_h·d_h] head outputs
  std::vector<HealMatrix<S>> probs;    // [W·n_h] of [T, T] (backward only)
};

template <typename S>
absl::StatusOr<Forward<S>> RunForward(const HealAttention<S>& a,
                                      const HealParams<S>& p,
                                      const Eigen::Ref<const HealMatrix<S>>& x,
                                      bool keep_probs) {
  using M = HealMatrix<S>;
  CARE_RETURN_IF_ERROR(CheckHealShapes(a, p));
  const int64_t n_h = a.shape.num_heads, dh = a.shape.head_dim;
  const int64_t r = a.shape.rope_dim, t_len = a.seq_len;
  if (x.cols() != a.shape.hidden || x.rows() % t_len != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing: inputs [", x.rows(), ", ", x.cols(),
                     "] must be whole windows of ", t_len, " tokens of width ",
                     a.shape.hidden));
  }
  const int64_t windows = x.rows() / t_len;
  Forward<S> f;
  f.qn = x * p.q_nope.transpose();  // [N, n_h·d_h]
  f.qp = x * p.q_pe.transpose();    // [N, n_h·R]
  f.c = x * p.w_down;               // [N, r]
  f.kp = x * p.w_pe.transpose();    // [N, R]
  f.kn = f.c * p.up_k;              // [N, n_h·d_h]
  f.v = f.c * p.up_v;               // [N, n_h·d_h]
  RotatePairs(a, n_h, S(1), f.qp);
  RotatePairs(a, 1, S(1), f.kp);
  f.o.resize(x.rows(), n_h * dh);
  if (keep_probs) f.probs.resize(windows * n_h);
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t r0 = w * t_len;
    for (int64_t h = 0; h < n_h; ++h) {
      M s = f.qn.block(r0, h * dh, t_len, dh) *
            f.kn.block(r0, h * dh, t_len, dh).transpose();  // [T, T]
      s.noalias() += f.qp.block(r0, h * r, t_len, r) *
                     f.kp.middleRows(r0, t_len).transpose();
      s *= a.scale;
      CausalSoftmax(s);
      f.o.block(r0, h * dh, t_len, dh).noalias() =
          s * f.v.block(r0, h * dh, t_len, dh);
      if (keep_probs) f.probs[w * n_h + h] = std::move(s);
    }
  }
  return f;
}

}  // namespace

template <typename S>
absl::StatusOr<HealMatrix<S>> HealHeadOutputs(
    const HealAttention<S>& a, const HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x) {
  CARE_ASSIGN_OR_RETURN(Forward<S> f, RunForward(a, p, x, false));
  return std::move(f.o);
}

template <typename S>
absl::StatusOr<HealMatrix<S>> HealOutput(
    const HealAttention<S>& a, const HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x) {
  CARE_ASSIGN_OR_RETURN(HealMatrix<S> o, HealHeadOutputs(a, p, x));
  return HealMatrix<S>(o * a.o_proj.transpose());
}

template <typename S>
absl::StatusOr<double> HealLoss(const HealAttention<S>& a,
                                const HealParams<S>& p,
                                const Eigen::Ref<const HealMatrix<S>>& x,
                                const Eigen::Ref<const HealMatrix<S>>& y,
                                HealParams<S>* grad) {
  using M = HealMatrix<S>;
  if (y.rows() != x.rows() || y.cols() != a.shape.hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing: targets [", y.rows(), ", ", y.cols(),
                     "] for inputs [", x.rows(), ", ", x.cols(), "]"));
  }
  CARE_ASSIGN_OR_RETURN(Forward<S> f, RunForward(a, p, x, grad != nullptr));
  const int64_t n_h = a.shape.num_heads, dh = a.shape.head_dim;
  const int64_t r = a.shape.rope_dim, t_len = a.seq_len;
  const int64_t windows = x.rows() / t_len;
  const M& qn = f.qn;
  const M& qp = f.qp;
  const M& c = f.c;
  const M& kp = f.kp;
  const M& kn = f.kn;
  const M& v = f.v;
  const M& o = f.o;
  const std::vector<M>& probs = f.probs;
  const M e = o * a.o_proj.transpose() - y;  // [N, D]
  const double loss = e.template cast<double>().squaredNorm();
  if (grad == nullptr) return loss;

  const M go = S(2) * e * a.o_proj;  // [N, n_h·d_h] d loss / d o
  M dqn = M::Zero(x.rows(), n_h * dh), dkn = M::Zero(x.rows(), n_h * dh);
  M dv = M::Zero(x.rows(), n_h * dh), dqp = M::Zero(x.rows(), n_h * r);
  M dkp = M::Zero(x.rows(), r);
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t r0 = w * t_len;
    for (int64_t h = 0; h < n_h; ++h) {
      const M& pr = probs[w * n_h + h];  // [T, T]
      const auto go_h = go.block(r0, h * dh, t_len, dh);
      dv.block(r0, h * dh, t_len, dh).noalias() = pr.transpose() * go_h;
      const M dp = go_h * v.block(r0, h * dh, t_len, dh).transpose();
      // Softmax backward: dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the scale.
      const Eigen::Matrix<S, Eigen::Dynamic, 1> dot =
          pr.cwiseProduct(dp).rowwise().sum();
      const M ds = a.scale * pr.cwiseProduct(dp.colwise() - dot);  // [T, T]
      dqn.block(r0, h * dh, t_len, dh).noalias() =
          ds * kn.block(r0, h * dh, t_len, dh);
      dkn.block(r0, h * dh, t_len, dh).noalias() =
          ds.transpose() * qn.block(r0, h * dh, t_len, dh);
      dqp.block(r0, h * r, t_len, r).noalias() = ds * kp.middleRows(r0, t_len);
      dkp.middleRows(r0, t_len).noalias() +=
          ds.transpose() * qp.block(r0, h * r, t_len, r);
    }
  }
  RotatePairs(a, n_h, S(-1), dqp);
  RotatePairs(a, 1, S(-1), dkp);
  grad->q_nope.noalias() = dqn.transpose() * x;
  grad->q_pe.noalias() = dqp.transpose() * x;
  grad->w_pe.noalias() = dkp.transpose() * x;
  grad->up_k.noalias() = c.transpose() * dkn;
  grad->up_v.noalias() = c.transpose() * dv;
  const M dc = dkn * p.up_k.transpose() + dv * p.up_v.transpose();  // [N, r]
  grad->w_down.noalias() = x.transpose() * dc;
  return loss;
}

namespace {

// Relative error Σ‖ŷ − y‖² / Σ‖y‖² over x's windows, in chunks of
// `chunk` windows (bounded memory).
template <typename S>
absl::StatusOr<double> RelativeError(const HealAttention<S>& a,
                                     const HealParams<S>& p,
                                     const Eigen::Ref<const HealMatrix<S>>& x,
                                     const Eigen::Ref<const HealMatrix<S>>& y,
                                     int64_t chunk) {
  const int64_t t_len = a.seq_len, windows = x.rows() / t_len;
  double err = 0;
  for (int64_t w = 0; w < windows; w += chunk) {
    const int64_t n = std::min(chunk, windows - w) * t_len;
    CARE_ASSIGN_OR_RETURN(double e,
                          HealLoss<S>(a, p, x.middleRows(w * t_len, n),
                                      y.middleRows(w * t_len, n), nullptr));
    err += e;
  }
  const double total = y.template cast<double>().squaredNorm();
  return total > 0 ? err / total : 0.0;
}

}  // namespace

template <typename S>
absl::StatusOr<HealResult> HealLayer(
    const HealAttention<S>& a, HealParams<S>& p,
    const Eigen::Ref<const HealMatrix<S>>& x_train,
    const Eigen::Ref<const HealMatrix<S>>& y_train,
    const Eigen::Ref<const HealMatrix<S>>& x_heldout,
    const Eigen::Ref<const HealMatrix<S>>& y_heldout,
    const HealOptions& options) {
  using M = HealMatrix<S>;
  CARE_RETURN_IF_ERROR(
      CheckHealRun(a, p, x_train.rows(), x_heldout.rows(), options));
  const int64_t t_len = a.seq_len;
  const int64_t train_windows = x_train.rows() / t_len;
  const int64_t chunk = HealEvalChunk(options);
  const int64_t bw = std::min(options.batch_windows, train_windows);
  HealParams<S> best;
  HealParams<S> m1 = p.ZerosLike(), m2 = p.ZerosLike(), g = p.ZerosLike();
  M xb(bw * t_len, a.shape.hidden), yb(bw * t_len, a.shape.hidden);
  HealLoop loop;
  loop.heldout = [&]() -> absl::StatusOr<double> {
    return RelativeError<S>(a, p, x_heldout, y_heldout, chunk);
  };
  loop.keep = [&]() -> absl::Status {
    best = p;
    return absl::OkStatus();
  };
  loop.step = [&](const HealStep& s) -> absl::Status {
    GatherWindows<S>(x_train, s.windows, t_len, xb);
    GatherWindows<S>(y_train, s.windows, t_len, yb);
    CARE_ASSIGN_OR_RETURN(double loss, HealLoss<S>(a, p, xb, yb, &g));
    const double norm = yb.template cast<double>().squaredNorm();
    if (s.train_before != nullptr) *s.train_before = norm > 0 ? loss / norm : 0;
    for (int i = 0; i < HealParams<S>::kBlocks; ++i) {
      // The gradient of the relative loss (scale-free).
      const M gi = g.block(i) / static_cast<S>(norm > 0 ? norm : 1);
      M& a1 = m1.block(i);
      M& a2 = m2.block(i);
      a1 = S(kHealBeta1) * a1 + S(1 - kHealBeta1) * gi;
      a2 = S(kHealBeta2) * a2 + S(1 - kHealBeta2) * gi.cwiseAbs2();
      const S lr = static_cast<S>(s.lr[i]);
      p.block(i).array() -=
          lr * (a1.array() / S(s.correction1)) /
          ((a2.array() / S(s.correction2)).sqrt() + static_cast<S>(kHealEps));
    }
    return absl::OkStatus();
  };
  CARE_ASSIGN_OR_RETURN(HealResult result,
                        RunHealSchedule<S>(p, train_windows, options, loop));
  p = std::move(best);
  return result;
}

#define CARE_HEAL_INSTANTIATE(S)                                    \
  template struct HealParams<S>;                                    \
  template absl::Status CheckHealShapes<S>(const HealAttention<S>&, \
                                           const HealParams<S>&);   \
  template absl::StatusOr<HealMatrix<S>> HealHeadOutputs<S>(        \
      const HealAttention<S>&, const HealParams<S>&,                \
      const Eigen::Ref<const HealMatrix<S>>&);                      \
  template absl::StatusOr<HealMatrix<S>> HealOutput<S>(             \
      const HealAttention<S>&, const HealParams<S>&,                \
      const Eigen::Ref<const HealMatrix<S>>&);                      \
  template absl::StatusOr<double> HealLoss<S>(                      \
      const HealAttention<S>&, const HealParams<S>&,                \
      const Eigen::Ref<const HealMatrix<S>>&,                       \
      const Eigen::Ref<const HealMatrix<S>>&, HealParams<S>*);      \
  template absl::StatusOr<HealResult> HealLayer<S>(                 \
      const HealAttention<S>&, HealParams<S>&,                      \
      const Eigen::Ref<const HealMatrix<S>>&,                       \
      const Eigen::Ref<const HealMatrix<S>>&,                       \
      const Eigen::Ref<const HealMatrix<S>>&,                       \
      const Eigen::Ref<const HealMatrix<S>>&, const HealOptions&);

CARE_HEAL_INSTANTIATE(float)
CARE_HEAL_INSTANTIATE(double)
#undef CARE_HEAL_INSTANTIATE

}  // namespace care::convert::mla
