// CudaBackend's training ops (backend.h "training"): MatMulTransposeA
// (cuBLAS, fp32), and the launchers of train_elementwise.cu and
// attention_backward.cu with the shared argument checks (train_checks.h).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cuda/cuda_backend.h"
#include "care/compute/cuda/kernels.h"
#include "care/compute/train_checks.h"

namespace care::compute::cuda {

absl::Status CudaBackend::MatMulTransposeA(const Matrix& a, const Matrix& b,
                                           Matrix* c, bool accumulate) {
  const std::string shapes = absl::StrCat("a ", ShapeOf(a), " (transposed) b ",
                                          ShapeOf(b), " c ", ShapeOf(*c));
  if (a.rows != b.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MatMulTransposeA: a and b differ in rows, the summed dimension (",
        shapes, ")"));
  }
  CARE_RETURN_IF_ERROR(CheckShape("MatMulTransposeA", "c", *c, a.cols, b.cols));
  if (c->empty()) return absl::OkStatus();
  if (a.rows == 0) return accumulate ? absl::OkStatus() : SetZero(c);
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  const int64_t k = a.rows, n = a.cols, m = b.cols;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // Column-major: cᵀ [m, n] = bᵀ [m, k] · a [k, n], where b's row-major
  // storage is bᵀ (ld m) and a's is aᵀ [n, k] (ld n), used transposed.
  CARE_RETURN_IF_ERROR(ctx_->CheckBlas(
      cublasSgemm_64(ctx_->cublas(), CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha,
                     b.data, m, a.data, n, &beta, c->data, m),
      "MatMulTransposeA: cublasSgemm", shapes));
  ctx_->AddFlop(2.0 * n * k * m, 0);
  return ctx_->SyncCheck("MatMulTransposeA", shapes);
}

absl::Status CudaBackend::Axpby(double alpha, const Matrix& x, double beta,
                                Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckShape("Axpby", "y", *y, x.rows, x.cols));
  if (y->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchAxpby(static_cast<float>(alpha), x.data, static_cast<float>(beta),
                  y->data, y->size(), ctx_->stream()),
      "Axpby", ShapeOf(x));
}

absl::StatusOr<double> CudaBackend::SquaredDistance(const Matrix& a,
                                                    const Matrix& b) {
  CARE_RETURN_IF_ERROR(CheckShape("SquaredDistance", "b", b, a.rows, a.cols));
  if (a.empty()) {
    CARE_RETURN_IF_ERROR(Synchronize());
    return 0.0;
  }
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> sums,
      ctx_->Allocate(sizeof(double) * (kSquaredDistanceBlocks + 1),
                     "SquaredDistance"));
  double* partials = static_cast<double*>(sums.get());
  CARE_RETURN_IF_ERROR(CheckLaunch(
      LaunchSquaredDistance(a.data, b.data, a.size(), partials,
                            partials + kSquaredDistanceBlocks, ctx_->stream()),
      "SquaredDistance", ShapeOf(a)));
  double result = 0;
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(&result, partials + kSquaredDistanceBlocks,
                      sizeof(double), cudaMemcpyDeviceToHost, ctx_->stream()),
      "SquaredDistance download", ShapeOf(a)));
  CARE_RETURN_IF_ERROR(ctx_->Check(cudaStreamSynchronize(ctx_->stream()),
                                   "SquaredDistance", ShapeOf(a)));
  return result;
}

absl::Status CudaBackend::ApplyRotary(const Matrix& cos, const Matrix& sin,
                                      int64_t head_dim, const RotaryOptions& o,
                                      Matrix* x) {
  CARE_RETURN_IF_ERROR(CheckRotary("ApplyRotary", cos, sin, head_dim, *x));
  if (x->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchRotary(cos.data, sin.data, cos.rows, 2 * cos.cols, head_dim,
                   o.interleaved, o.inverse, x->data, x->rows, x->cols,
                   ctx_->stream()),
      "ApplyRotary",
      absl::StrCat(ShapeOf(*x), " cos ", ShapeOf(cos), " head_dim ", head_dim,
                   o.interleaved ? " interleaved" : "",
                   o.inverse ? " inverse" : ""));
}

absl::Status CudaBackend::AddColumns(const Matrix& src, const ColumnBlocks& b,
                                     Matrix* dst) {
  CARE_RETURN_IF_ERROR(CheckAddColumns(src, b, *dst));
  if (b.groups == 0 || b.width == 0 || src.rows == 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchAddColumns(src.data, src.cols, b.src_col0, b.src_stride, dst->data,
                       dst->cols, b.dst_col0, b.dst_stride, src.rows, b.groups,
                       b.width, ctx_->stream()),
      "AddColumns", absl::StrCat(ShapeOf(src), " -> ", ShapeOf(*dst)));
}

absl::Status CudaBackend::CausalAttentionBackward(
    const AttentionShape& s, const Matrix& q, const Matrix& k, const Matrix& v,
    const Matrix& out, const Matrix& d_out, Matrix* dq, Matrix* dk,
    Matrix* dv) {
  CARE_RETURN_IF_ERROR(
      CheckAttentionBackward(s, q, k, v, out, d_out, *dq, *dk, *dv));
  const int64_t dval = s.value_dim();
  const std::string shape = absl::StrCat(
      "windows ", s.windows, " seq_len ", s.seq_len, " heads ", s.heads,
      " kv_heads ", s.kv_heads, " head_dim ", s.head_dim, " v_head_dim ", dval);
  if (s.head_dim > kMaxAttentionHeadDim || dval > kMaxAttentionHeadDim) {
    return absl::UnimplementedError(
        absl::StrCat("CausalAttentionBackward on cuda: head_dim ", s.head_dim,
                     " / v_head_dim ", dval, " exceed the kernel's limit ",
                     kMaxAttentionHeadDim));
  }
  const float scale = s.scale > 0
                          ? static_cast<float>(s.scale)
                          : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  const int64_t rows = s.windows * s.seq_len;
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> stats,
      ctx_->Allocate(sizeof(float) * 2 * rows * s.heads,
                     "CausalAttentionBackward row statistics"));
  CARE_RETURN_IF_ERROR(CheckLaunch(
      LaunchCausalAttentionBackward(
          q.data, k.data, v.data, out.data, d_out.data, dq->data, dk->data,
          dv->data, static_cast<float*>(stats.get()), s.windows, s.seq_len,
          s.heads, s.kv_heads, s.head_dim, dval, scale, ctx_->stream()),
      "CausalAttentionBackward", shape));
  // Three score passes and two value passes over the visible pairs, plus
  // the two gradient products: ~2·(3·d_h + 2·d_v + 2·(d_h + d_v)) flop each.
  const double pairs = 0.5 * static_cast<double>(s.seq_len) * (s.seq_len + 1);
  ctx_->AddFlop(
      0, 2.0 * (5.0 * s.head_dim + 4.0 * dval) * pairs * s.heads * s.windows);
  return absl::OkStatus();
}

absl::Status CudaBackend::AdamUpdate(const Matrix& grad, const AdamStep& step,
                                     Matrix* param, Matrix* m1, Matrix* m2) {
  CARE_RETURN_IF_ERROR(CheckAdam(grad, step, *param, *m1, *m2));
  if (param->empty()) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  return CheckLaunch(
      LaunchAdam(
          grad.data, param->data, m1->data, m2->data, param->size(),
          static_cast<float>(step.lr), static_cast<float>(step.beta1),
          static_cast<float>(step.beta2), static_cast<float>(1 - step.beta1),
          static_cast<float>(1 - step.beta2),
          static_cast<float>(step.correction1),
          static_cast<float>(step.correction2), static_cast<float>(step.eps),
          static_cast<float>(step.grad_scale), ctx_->stream()),
      "AdamUpdate", ShapeOf(*param));
}

}  // namespace care::compute::cuda
