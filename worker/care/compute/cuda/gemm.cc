// CudaBackend GEMMs: Linear (activation × weightᵀ, bf16 tensor cores with
// fp32 accumulation, or fp32 for fp32 weights) and MatMul (fp32, no TF32).
// cuBLAS is column-major: a row-major [r, c] matrix is a column-major
// [c, r] one, so y = x·wᵀ is computed as yᵀ = w·xᵀ in cuBLAS terms.
#include <cublas_v2.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cuda/cuda_backend.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {

absl::StatusOr<void*> CudaBackend::Bf16Scratch(const Matrix& x) {
  const size_t bytes = sizeof(Bf16Bits) * x.size();
  if (bytes > scratch_bytes_) {
    // The old buffer is freed stream-ordered, after the ops that use it.
    CARE_ASSIGN_OR_RETURN(
        scratch_,
        ctx_->Allocate(bytes, absl::StrCat("the bf16 copy of a ", ShapeOf(x),
                                           " activation")));
    scratch_bytes_ = bytes;
  }
  CARE_RETURN_IF_ERROR(ctx_->Check(
      LaunchF32ToBf16(x.data, static_cast<Bf16Bits*>(scratch_.get()), x.size(),
                      ctx_->stream()),
      "Linear: fp32 -> bf16 of x", ShapeOf(x)));
  return scratch_.get();
}

absl::Status CudaBackend::Linear(const Matrix& x, const Weight& w,
                                 const Matrix* bias, Matrix* y,
                                 bool accumulate) {
  const std::string shapes = absl::StrCat("x ", ShapeOf(x), " w [", w.rows,
                                          ", ", w.cols, "] y ", ShapeOf(*y));
  auto* dw = static_cast<DeviceWeight*>(w.storage.get());
  if (dw == nullptr || w.data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: the weight was not made by LoadWeight on this "
                     "backend (",
                     shapes, ")"));
  }
  if (w.dtype != DType::kBF16 && w.dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Linear: weight dtype must be bf16 or f32 on cuda (", shapes, ")"));
  }
  if (x.cols != w.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: x.cols != w.cols (", shapes, ")"));
  }
  CARE_RETURN_IF_ERROR(CheckShape("Linear", "y", *y, x.rows, w.rows));
  if (bias != nullptr) {
    CARE_RETURN_IF_ERROR(CheckShape("Linear", "bias", *bias, 1, w.rows));
  }
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t s = ctx_->stream();
  // Wait for the upload (done at once when it finished long ago); the first
  // use also marks when compute needed it, for the copy-overlap counters.
  CopyRecord& rec = *dw->record;
  if (!rec.need_recorded.exchange(true)) {
    CARE_RETURN_IF_ERROR(
        ctx_->Check(cudaEventRecord(rec.need, s), "Linear: record", shapes));
  }
  CARE_RETURN_IF_ERROR(ctx_->Check(cudaStreamWaitEvent(s, rec.done, 0),
                                   "Linear: wait for the weight", shapes));
  if (y->empty()) return absl::OkStatus();
  const int64_t n = x.rows, in = w.cols, out = w.rows;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  if (w.dtype == DType::kBF16) {
    CARE_ASSIGN_OR_RETURN(void* xb, Bf16Scratch(x));
    CARE_RETURN_IF_ERROR(ctx_->CheckBlas(
        cublasGemmEx_64(ctx_->cublas(), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in,
                        &alpha, w.data, CUDA_R_16BF, in, xb, CUDA_R_16BF, in,
                        &beta, y->data, CUDA_R_32F, out, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT),
        "Linear: cublasGemmEx bf16", shapes));
  } else {
    CARE_RETURN_IF_ERROR(ctx_->CheckBlas(
        cublasSgemm_64(ctx_->cublas(), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in,
                       &alpha, static_cast<const float*>(w.data), in, x.data,
                       in, &beta, y->data, out),
        "Linear: cublasSgemm", shapes));
  }
  if (bias != nullptr) {
    CARE_RETURN_IF_ERROR(
        ctx_->Check(LaunchAddRow(bias->data, y->data, y->rows, y->cols, s),
                    "Linear: bias", shapes));
  }
  ctx_->AddFlop(2.0 * n * in * out, 0);
  return ctx_->SyncCheck("Linear", shapes);
}

absl::Status CudaBackend::MatMul(const Matrix& a, const Matrix& b,
                                 bool transpose_b, Matrix* c, bool accumulate) {
  const int64_t n = a.rows, k = a.cols;
  const int64_t bk = transpose_b ? b.cols : b.rows;
  const int64_t m = transpose_b ? b.rows : b.cols;
  const std::string shapes =
      absl::StrCat("a ", ShapeOf(a), " b ", ShapeOf(b),
                   transpose_b ? " (transposed)" : "", " c ", ShapeOf(*c));
  if (bk != k) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: inner dimensions differ (", shapes, ")"));
  }
  CARE_RETURN_IF_ERROR(CheckShape("MatMul", "c", *c, n, m));
  if (c->empty()) return absl::OkStatus();
  if (k == 0) return accumulate ? absl::OkStatus() : SetZero(c);
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // cᵀ [m, n] = bᵀ [m, k] · aᵀ [k, n] in column-major terms.
  CARE_RETURN_IF_ERROR(ctx_->CheckBlas(
      cublasSgemm_64(ctx_->cublas(), transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                     CUBLAS_OP_N, m, n, k, &alpha, b.data, transpose_b ? k : m,
                     a.data, k, &beta, c->data, m),
      "MatMul: cublasSgemm", shapes));
  ctx_->AddFlop(2.0 * n * k * m, 0);
  return ctx_->SyncCheck("MatMul", shapes);
}

}  // namespace care::compute::cuda
