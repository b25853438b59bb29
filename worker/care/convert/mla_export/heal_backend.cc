#include "care/convert/mla_export/heal_backend.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/heal_schedule.h"

namespace care::convert::mla {
namespace {

using compute::Backend;
using compute::ColumnBlocks;
using compute::Matrix;
using compute::RowsView;
using MF = HealMatrix<float>;

constexpr int kBlocks = kHealBlocks;

absl::StatusOr<Matrix> Up(Backend& b, const Eigen::Ref<const MF>& m) {
  if (m.rows() > 1 && m.outerStride() != m.cols()) {
    const MF dense = m;  // a column block: make its rows contiguous
    return b.Upload(dense.data(), dense.rows(), dense.cols());
  }
  return b.Upload(m.data(), m.rows(), m.cols());
}

// The six parameter-shaped blocks (parameters, gradients, moments) in
// backend memory, in HealParams' order.
using Blocks = std::array<Matrix, kBlocks>;

absl::StatusOr<Blocks> UploadBlocks(Backend& b, const HealParams<float>& p) {
  Blocks out;
  for (int i = 0; i < kBlocks; ++i) {
    CARE_ASSIGN_OR_RETURN(out[i], Up(b, p.block(i)));
  }
  return out;
}

absl::StatusOr<Blocks> AllocateLike(Backend& b, const Blocks& like) {
  Blocks out;
  for (int i = 0; i < kBlocks; ++i) {
    CARE_ASSIGN_OR_RETURN(out[i], b.Allocate(like[i].rows, like[i].cols));
  }
  return out;
}

absl::Status DownloadBlocks(Backend& b, const Blocks& d, HealParams<float>& p) {
  for (int i = 0; i < kBlocks; ++i) {
    p.block(i).resize(d[i].rows, d[i].cols);
    CARE_RETURN_IF_ERROR(b.Download(d[i], p.block(i).data()));
  }
  return absl::OkStatus();
}

absl::Status CheckInputs(const HealAttention<float>& a, int64_t x_rows,
                         int64_t x_cols, int64_t y_rows, int64_t y_cols) {
  if (y_rows != x_rows || y_cols != a.shape.hidden) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing: targets [", y_rows, ", ", y_cols,
                     "] for inputs [", x_rows, ", ", x_cols, "]"));
  }
  if (x_cols != a.shape.hidden || x_rows % a.seq_len != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing: inputs [", x_rows, ", ", x_cols,
                     "] must be whole windows of ", a.seq_len,
                     " tokens of width ", a.shape.hidden));
  }
  return absl::OkStatus();
}

// One layer's healing problem in backend memory: the fixed parts, the
// parameters and their gradients, and the activations of a step for up to
// `capacity` windows (views of the first rows serve smaller batches).
class HealDevice {
 public:
  static absl::StatusOr<HealDevice> Create(Backend& b,
                                           const HealAttention<float>& a,
                                           const HealParams<float>& p,
                                           int64_t capacity_windows) {
    CARE_RETURN_IF_ERROR(CheckHealShapes(a, p));
    HealDevice d(b, a);
    const HealShape& s = a.shape;
    const int64_t n = capacity_windows * a.seq_len;
    const int64_t hd = s.num_heads * s.head_dim;
    const int64_t hq = s.num_heads * (s.head_dim + s.rope_dim);
    CARE_ASSIGN_OR_RETURN(d.cos_, Up(b, a.cos));
    CARE_ASSIGN_OR_RETURN(d.sin_, Up(b, a.sin));
    CARE_ASSIGN_OR_RETURN(d.o_proj_, Up(b, a.o_proj));
    CARE_ASSIGN_OR_RETURN(d.params, UploadBlocks(b, p));
    CARE_ASSIGN_OR_RETURN(d.grads, AllocateLike(b, d.params));
    auto alloc = [&](Matrix& m, int64_t cols) -> absl::Status {
      CARE_ASSIGN_OR_RETURN(m, b.Allocate(n, cols));
      return absl::OkStatus();
    };
    CARE_RETURN_IF_ERROR(alloc(d.qn_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.qp_, s.num_heads * s.rope_dim));
    CARE_RETURN_IF_ERROR(alloc(d.c_, s.rank));
    CARE_RETURN_IF_ERROR(alloc(d.kp_, s.rope_dim));
    CARE_RETURN_IF_ERROR(alloc(d.kn_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.v_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.q_, hq));
    CARE_RETURN_IF_ERROR(alloc(d.k_, hq));
    CARE_RETURN_IF_ERROR(alloc(d.o_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.yhat_, s.hidden));
    CARE_RETURN_IF_ERROR(alloc(d.go_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.dq_, hq));
    CARE_RETURN_IF_ERROR(alloc(d.dk_, hq));
    CARE_RETURN_IF_ERROR(alloc(d.dv_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.dqn_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.dqp_, s.num_heads * s.rope_dim));
    CARE_RETURN_IF_ERROR(alloc(d.dkn_, hd));
    CARE_RETURN_IF_ERROR(alloc(d.dkp_, s.rope_dim));
    CARE_RETURN_IF_ERROR(alloc(d.dc_, s.rank));
    d.capacity_ = n;
    return d;
  }

  // ŷ for x [n, D] (whole windows, n <= capacity) into Yhat().
  absl::Status Forward(const Matrix& x) {
    const HealShape& s = a_->shape;
    const int64_t dh = s.head_dim, r = s.rope_dim;
    if (x.rows > capacity_ || x.rows % a_->seq_len != 0) {
      return absl::InternalError(absl::StrCat(
          "healing: batch of ", x.rows, " rows for capacity ", capacity_));
    }
    n_ = x.rows;
    const compute::RotaryOptions rope{.interleaved = true, .inverse = false};
    Matrix qn = V(qn_), qp = V(qp_), c = V(c_), kp = V(kp_), kn = V(kn_),
           v = V(v_), q = V(q_), k = V(k_), o = V(o_), yhat = V(yhat_);
    CARE_RETURN_IF_ERROR(b_->MatMul(x, params[0], true, &qn, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(x, params[1], true, &qp, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(x, params[2], false, &c, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(x, params[3], true, &kp, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(c, params[4], false, &kn, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(c, params[5], false, &v, false));
    CARE_RETURN_IF_ERROR(b_->ApplyRotary(cos_, sin_, r, rope, &qp));
    CARE_RETURN_IF_ERROR(b_->ApplyRotary(cos_, sin_, r, rope, &kp));
    // Per head [nope | pe]: q from its own rows, k with the shared k_pe.
    CARE_RETURN_IF_ERROR(b_->CopyColumns(qn, Heads(dh, dh, 0, 0), &q));
    CARE_RETURN_IF_ERROR(b_->CopyColumns(qp, Heads(r, r, 0, dh), &q));
    CARE_RETURN_IF_ERROR(b_->CopyColumns(kn, Heads(dh, dh, 0, 0), &k));
    CARE_RETURN_IF_ERROR(b_->CopyColumns(kp, Heads(r, 0, 0, dh), &k));
    CARE_RETURN_IF_ERROR(b_->CausalAttention(Shape(), q, k, v, &o));
    return b_->MatMul(o, o_proj_, true, &yhat, false);  // [n, D]
  }

  Matrix Yhat() const { return V(yhat_); }

  // After Forward on x: grads = grad_scale · ∇ Σ(ŷ − y)². Overwrites ŷ.
  absl::Status Backward(const Matrix& x, const Matrix& y, double grad_scale) {
    const HealShape& s = a_->shape;
    const int64_t dh = s.head_dim, r = s.rope_dim;
    const compute::RotaryOptions back{.interleaved = true, .inverse = true};
    Matrix e = V(yhat_), go = V(go_), dq = V(dq_), dk = V(dk_), dv = V(dv_),
           dqn = V(dqn_), dqp = V(dqp_), dkn = V(dkn_), dkp = V(dkp_),
           dc = V(dc_), c = V(c_);
    const double g = 2 * grad_scale;                // d(e²)/de = 2e
    CARE_RETURN_IF_ERROR(b_->Axpby(-g, y, g, &e));  // g·(ŷ − y)
    CARE_RETURN_IF_ERROR(b_->MatMul(e, o_proj_, false, &go, false));
    CARE_RETURN_IF_ERROR(b_->CausalAttentionBackward(
        Shape(), V(q_), V(k_), V(v_), V(o_), go, &dq, &dk, &dv));
    const int64_t w = dh + r;
    CARE_RETURN_IF_ERROR(b_->CopyColumns(dq, Split(dh, 0, w, dh), &dqn));
    CARE_RETURN_IF_ERROR(b_->CopyColumns(dq, Split(r, dh, w, r), &dqp));
    CARE_RETURN_IF_ERROR(b_->CopyColumns(dk, Split(dh, 0, w, dh), &dkn));
    // k_pe is shared by the heads: its gradient is the sum of theirs.
    CARE_RETURN_IF_ERROR(b_->SetZero(&dkp));
    CARE_RETURN_IF_ERROR(b_->AddColumns(dk, Split(r, dh, w, 0), &dkp));
    CARE_RETURN_IF_ERROR(b_->ApplyRotary(cos_, sin_, r, back, &dqp));
    CARE_RETURN_IF_ERROR(b_->ApplyRotary(cos_, sin_, r, back, &dkp));
    CARE_RETURN_IF_ERROR(b_->MatMulTransposeA(dqn, x, &grads[0], false));
    CARE_RETURN_IF_ERROR(b_->MatMulTransposeA(dqp, x, &grads[1], false));
    CARE_RETURN_IF_ERROR(b_->MatMulTransposeA(dkp, x, &grads[3], false));
    CARE_RETURN_IF_ERROR(b_->MatMulTransposeA(c, dkn, &grads[4], false));
    CARE_RETURN_IF_ERROR(b_->MatMulTransposeA(c, dv, &grads[5], false));
    CARE_RETURN_IF_ERROR(b_->MatMul(dkn, params[4], true, &dc, false));
    CARE_RETURN_IF_ERROR(b_->MatMul(dv, params[5], true, &dc, true));  // [n, r]
    return b_->MatMulTransposeA(x, dc, &grads[2], false);
  }

  Blocks params, grads;

 private:
  HealDevice(Backend& b, const HealAttention<float>& a) : b_(&b), a_(&a) {}

  Matrix V(const Matrix& m) const { return RowsView(m, 0, n_); }

  compute::AttentionShape Shape() const {
    const HealShape& s = a_->shape;
    return {.windows = n_ / a_->seq_len,
            .seq_len = a_->seq_len,
            .heads = s.num_heads,
            .kv_heads = s.num_heads,
            .head_dim = s.head_dim + s.rope_dim,
            .v_head_dim = s.head_dim,
            .scale = static_cast<double>(a_->scale)};
  }
  // Head blocks of width `width` from a source with head stride
  // src_stride (0: one block broadcast) to [nope | pe] heads of q/k.
  ColumnBlocks Heads(int64_t width, int64_t src_stride, int64_t src_col0,
                     int64_t dst_col0) const {
    const HealShape& s = a_->shape;
    return {.groups = s.num_heads,
            .width = width,
            .src_col0 = src_col0,
            .src_stride = src_stride,
            .dst_col0 = dst_col0,
            .dst_stride = s.head_dim + s.rope_dim};
  }
  // Head blocks of dq/dk (stride d_h + R) to dense per-head blocks.
  ColumnBlocks Split(int64_t width, int64_t src_col0, int64_t src_stride,
                     int64_t dst_stride) const {
    return {.groups = a_->shape.num_heads,
            .width = width,
            .src_col0 = src_col0,
            .src_stride = src_stride,
            .dst_col0 = 0,
            .dst_stride = dst_stride};
  }

  Backend* b_;
  const HealAttention<float>* a_;
  Matrix cos_, sin_, o_proj_;
  Matrix qn_, qp_, c_, kp_, kn_, v_, q_, k_, o_, yhat_;
  Matrix go_, dq_, dk_, dv_, dqn_, dqp_, dkn_, dkp_, dc_;
  int64_t capacity_ = 0, n_ = 0;
};

// Σ‖ŷ − y‖² / Σ‖y‖² over the windows of x, y (backend memory) in chunks of
// `chunk` windows; y_norm = Σ‖y‖² (computed on the host in float64).
absl::StatusOr<double> RelativeError(HealDevice& d, Backend& b, const Matrix& x,
                                     const Matrix& y, double y_norm,
                                     int64_t t_len, int64_t chunk) {
  const int64_t windows = x.rows / t_len;
  double err = 0;
  for (int64_t w = 0; w < windows; w += chunk) {
    const int64_t n = std::min(chunk, windows - w) * t_len;
    const Matrix xs = RowsView(x, w * t_len, n);
    CARE_RETURN_IF_ERROR(d.Forward(xs));
    CARE_ASSIGN_OR_RETURN(
        const double e, b.SquaredDistance(d.Yhat(), RowsView(y, w * t_len, n)));
    err += e;
  }
  return y_norm > 0 ? err / y_norm : 0.0;
}

}  // namespace

absl::StatusOr<double> HealLossOnBackend(Backend& backend,
                                         const HealAttention<float>& a,
                                         const HealParams<float>& p,
                                         const Eigen::Ref<const MF>& x,
                                         const Eigen::Ref<const MF>& y,
                                         HealParams<float>* grad) {
  CARE_RETURN_IF_ERROR(CheckHealShapes(a, p));
  CARE_RETURN_IF_ERROR(CheckInputs(a, x.rows(), x.cols(), y.rows(), y.cols()));
  CARE_ASSIGN_OR_RETURN(
      HealDevice d, HealDevice::Create(backend, a, p, x.rows() / a.seq_len));
  CARE_ASSIGN_OR_RETURN(const Matrix xd, Up(backend, x));
  CARE_ASSIGN_OR_RETURN(const Matrix yd, Up(backend, y));
  CARE_RETURN_IF_ERROR(d.Forward(xd));
  CARE_ASSIGN_OR_RETURN(const double loss,
                        backend.SquaredDistance(d.Yhat(), yd));
  if (grad == nullptr) return loss;
  CARE_RETURN_IF_ERROR(d.Backward(xd, yd, 1.0));
  CARE_RETURN_IF_ERROR(DownloadBlocks(backend, d.grads, *grad));
  return loss;
}

absl::StatusOr<HealResult> HealLayerOnBackend(
    Backend& backend, const HealAttention<float>& a, HealParams<float>& p,
    const Eigen::Ref<const MF>& x_train, const Eigen::Ref<const MF>& y_train,
    const Eigen::Ref<const MF>& x_heldout,
    const Eigen::Ref<const MF>& y_heldout, const HealOptions& options) {
  CARE_RETURN_IF_ERROR(
      CheckHealRun(a, p, x_train.rows(), x_heldout.rows(), options));
  CARE_RETURN_IF_ERROR(CheckInputs(a, x_train.rows(), x_train.cols(),
                                   y_train.rows(), y_train.cols()));
  CARE_RETURN_IF_ERROR(CheckInputs(a, x_heldout.rows(), x_heldout.cols(),
                                   y_heldout.rows(), y_heldout.cols()));
  const int64_t t_len = a.seq_len;
  const int64_t train_windows = x_train.rows() / t_len;
  const int64_t chunk = HealEvalChunk(options);
  const int64_t held_windows = x_heldout.rows() / t_len;
  const int64_t bw = std::min(options.batch_windows, train_windows);
  CARE_ASSIGN_OR_RETURN(
      HealDevice d,
      HealDevice::Create(backend, a, p,
                         std::max(bw, std::min(chunk, held_windows))));
  // The held-out windows stay in backend memory for the layer (a small
  // slice: --heldout-windows × --calib-seq-len tokens).
  CARE_ASSIGN_OR_RETURN(const Matrix xh, Up(backend, x_heldout));
  CARE_ASSIGN_OR_RETURN(const Matrix yh, Up(backend, y_heldout));
  const double yh_norm = y_heldout.cast<double>().squaredNorm();
  CARE_ASSIGN_OR_RETURN(Blocks best, AllocateLike(backend, d.params));
  CARE_ASSIGN_OR_RETURN(Blocks m1, AllocateLike(backend, d.params));
  CARE_ASSIGN_OR_RETURN(Blocks m2, AllocateLike(backend, d.params));
  for (int i = 0; i < kBlocks; ++i) {
    CARE_RETURN_IF_ERROR(backend.SetZero(&m1[i]));
    CARE_RETURN_IF_ERROR(backend.SetZero(&m2[i]));
  }
  MF xb(bw * t_len, a.shape.hidden), yb(bw * t_len, a.shape.hidden);
  HealLoop loop;
  loop.heldout = [&]() -> absl::StatusOr<double> {
    return RelativeError(d, backend, xh, yh, yh_norm, t_len, chunk);
  };
  loop.keep = [&]() -> absl::Status {
    for (int i = 0; i < kBlocks; ++i) {
      CARE_RETURN_IF_ERROR(backend.Copy(d.params[i], &best[i]));
    }
    return absl::OkStatus();
  };
  loop.step = [&](const HealStep& s) -> absl::Status {
    GatherWindows<float>(x_train, s.windows, t_len, xb);
    GatherWindows<float>(y_train, s.windows, t_len, yb);
    CARE_ASSIGN_OR_RETURN(const Matrix xd, Up(backend, xb));
    CARE_ASSIGN_OR_RETURN(const Matrix yd, Up(backend, yb));
    const double norm = yb.cast<double>().squaredNorm();
    CARE_RETURN_IF_ERROR(d.Forward(xd));
    if (s.train_before != nullptr) {
      // The only loss a step reads back (one wait per layer).
      CARE_ASSIGN_OR_RETURN(const double loss,
                            backend.SquaredDistance(d.Yhat(), yd));
      *s.train_before = norm > 0 ? loss / norm : 0;
    }
    // The gradient of the relative loss (scale-free).
    CARE_RETURN_IF_ERROR(d.Backward(xd, yd, 1.0 / (norm > 0 ? norm : 1)));
    compute::AdamStep as;
    as.beta1 = kHealBeta1;
    as.beta2 = kHealBeta2;
    as.eps = kHealEps;
    as.correction1 = s.correction1;
    as.correction2 = s.correction2;
    for (int i = 0; i < kBlocks; ++i) {
      as.lr = static_cast<float>(s.lr[i]);
      CARE_RETURN_IF_ERROR(
          backend.AdamUpdate(d.grads[i], as, &d.params[i], &m1[i], &m2[i]));
    }
    return absl::OkStatus();
  };
  CARE_ASSIGN_OR_RETURN(
      const HealResult result,
      RunHealSchedule<float>(p, train_windows, options, loop));
  CARE_RETURN_IF_ERROR(DownloadBlocks(backend, best, p));
  return result;
}

}  // namespace care::convert::mla
