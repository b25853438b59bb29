// CudaBackend calibration statistics (fp32 SYRK over 256-row blocks, each
// block added to an fp64 accumulator on the device) and the dense fp64
// linear algebra through cuSOLVER (syevd for the symmetric eigenproblem,
// gesvd for the SVD).
#include <cublas_v2.h>
#include <cusolverDn.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cuda/cuda_backend.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

// Rows per fp32 SYRK block: the same bound as the CPU accumulator (each
// fp32 partial sum covers at most 256 terms before it reaches fp64).
constexpr int64_t kGramBlockRows = 256;

struct GramBuffers {
  std::shared_ptr<void> sum;      // [D, D] fp64, column-major, lower valid
  std::shared_ptr<void> abs_sum;  // [D] fp64
};

}  // namespace

absl::StatusOr<Gram> CudaBackend::NewGram(int64_t dim) {
  if (dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("NewGram: dimension ", dim, " must be >= 1"));
  }
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  auto b = std::make_shared<GramBuffers>();
  const std::string what = absl::StrCat("a [", dim, ", ", dim, "] fp64 Gram");
  CARE_ASSIGN_OR_RETURN(b->sum,
                        ctx_->Allocate(sizeof(double) * dim * dim, what));
  CARE_ASSIGN_OR_RETURN(b->abs_sum, ctx_->Allocate(sizeof(double) * dim, what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemsetAsync(b->sum.get(), 0, sizeof(double) * dim * dim,
                                  ctx_->stream()),
                  "NewGram", what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemsetAsync(b->abs_sum.get(), 0, sizeof(double) * dim,
                                  ctx_->stream()),
                  "NewGram", what));
  Gram g;
  g.dim = dim;
  g.storage = std::move(b);
  return g;
}

absl::Status CudaBackend::GramAdd(const Matrix& x, Gram* g) {
  const int64_t D = g->dim;
  if (x.cols != D) {
    return absl::InvalidArgumentError(
        absl::StrCat("GramAdd: x is ", ShapeOf(x), ", expected width ", D));
  }
  if (x.rows == 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t s = ctx_->stream();
  const std::string shapes = absl::StrCat("x ", ShapeOf(x), " D ", D);
  // NaN/inf first (one small round trip per call): nothing is added then.
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> bad,
      ctx_->Allocate(sizeof(unsigned long long), "GramAdd's NaN counter"));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemsetAsync(bad.get(), 0, sizeof(unsigned long long), s),
                  "GramAdd", shapes));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      LaunchCountNonFinite(x.data, x.size(),
                           static_cast<unsigned long long*>(bad.get()), s),
      "GramAdd: CountNonFinite", shapes));
  unsigned long long nonfinite = 0;
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(&nonfinite, bad.get(), sizeof(nonfinite),
                                  cudaMemcpyDeviceToHost, s),
                  "GramAdd", shapes));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaStreamSynchronize(s), "GramAdd", shapes));
  if (nonfinite != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GramAdd: x ", ShapeOf(x), " holds ", nonfinite,
                     " non-finite values (NaN/inf); nothing was added"));
  }
  auto* b = static_cast<GramBuffers*>(g->storage.get());
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> block,
      ctx_->Allocate(sizeof(float) * D * D,
                     absl::StrCat("GramAdd's fp32 [", D, ", ", D, "] block")));
  auto* blk = static_cast<float*>(block.get());
  const float one = 1.0f, zero = 0.0f;
  for (int64_t r0 = 0; r0 < x.rows; r0 += kGramBlockRows) {
    const int64_t rows = std::min(kGramBlockRows, x.rows - r0);
    const float* xb = x.data + r0 * D;
    // Row-major [rows, D] is column-major [D, rows]: A·Aᵀ = Σ_r x_rᵀ x_r,
    // lower triangle, plain fp32 (the handle's math mode excludes TF32).
    CARE_RETURN_IF_ERROR(ctx_->CheckBlas(
        cublasSsyrk_64(ctx_->cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, D,
                       rows, &one, xb, D, &zero, blk, D),
        "GramAdd: cublasSsyrk", shapes));
    CARE_RETURN_IF_ERROR(ctx_->Check(
        LaunchAccumulateLower(blk, D, static_cast<double*>(b->sum.get()), s),
        "GramAdd: AccumulateLower", shapes));
    CARE_RETURN_IF_ERROR(
        ctx_->Check(LaunchAbsColumnSums(
                        xb, rows, D, static_cast<double*>(b->abs_sum.get()), s),
                    "GramAdd: AbsColumnSums", shapes));
  }
  g->tokens += x.rows;
  ctx_->AddFlop(static_cast<double>(x.rows) * D * (D + 1), 0);
  return ctx_->SyncCheck("GramAdd", shapes);
}

absl::StatusOr<GramHost> CudaBackend::GramDownload(const Gram& g) {
  const int64_t D = g.dim;
  GramHost h;
  h.sum.resize(D, D);
  h.abs_sum.resize(D);
  h.tokens = g.tokens;
  auto* b = static_cast<GramBuffers*>(g.storage.get());
  if (b == nullptr) {
    return absl::InvalidArgumentError("GramDownload: Gram not made by NewGram");
  }
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t s = ctx_->stream();
  const std::string what = absl::StrCat("[", D, ", ", D, "] Gram");
  // Both column-major: Eigen's MatrixXd receives the device layout as is.
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(h.sum.data(), b->sum.get(), sizeof(double) * D * D,
                      cudaMemcpyDeviceToHost, s),
      "GramDownload", what));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(h.abs_sum.data(), b->abs_sum.get(), sizeof(double) * D,
                      cudaMemcpyDeviceToHost, s),
      "GramDownload", what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaStreamSynchronize(s), "GramDownload", what));
  h.sum.triangularView<Eigen::StrictlyUpper>() =
      h.sum.triangularView<Eigen::StrictlyLower>().transpose();
  return h;
}

absl::StatusOr<SymmetricEigenResult> CudaBackend::SymmetricEigen(
    const Eigen::MatrixXd& a) {
  const int64_t n = a.rows();
  if (a.cols() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("SymmetricEigen: matrix is [", a.rows(), ", ", a.cols(),
                     "], expected square"));
  }
  SymmetricEigenResult r;
  if (n == 0) return r;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t s = ctx_->stream();
  const std::string what = absl::StrCat("[", n, ", ", n, "] fp64");
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> da,
      ctx_->Allocate(sizeof(double) * n * n, "SymmetricEigen's matrix"));
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> dw,
      ctx_->Allocate(sizeof(double) * n, "SymmetricEigen's eigenvalues"));
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> dinfo,
                        ctx_->Allocate(sizeof(int), "SymmetricEigen's info"));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(da.get(), a.data(), sizeof(double) * n * n,
                                  cudaMemcpyHostToDevice, s),
                  "SymmetricEigen upload", what));
  size_t dev_bytes = 0, host_bytes = 0;
  CARE_RETURN_IF_ERROR(ctx_->CheckSolver(
      cusolverDnXsyevd_bufferSize(
          ctx_->cusolver(), ctx_->cusolver_params(), CUSOLVER_EIG_MODE_VECTOR,
          CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, da.get(), n, CUDA_R_64F,
          dw.get(), CUDA_R_64F, &dev_bytes, &host_bytes),
      "SymmetricEigen: cusolverDnXsyevd_bufferSize", what));
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> work,
                        ctx_->Allocate(std::max<size_t>(dev_bytes, 1),
                                       "SymmetricEigen's workspace"));
  std::vector<char> host_work(std::max<size_t>(host_bytes, 1));
  CARE_RETURN_IF_ERROR(ctx_->CheckSolver(
      cusolverDnXsyevd(ctx_->cusolver(), ctx_->cusolver_params(),
                       CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                       CUDA_R_64F, da.get(), n, CUDA_R_64F, dw.get(),
                       CUDA_R_64F, work.get(), dev_bytes, host_work.data(),
                       host_bytes, static_cast<int*>(dinfo.get())),
      "SymmetricEigen: cusolverDnXsyevd", what));
  int info = 0;
  r.values.resize(n);
  r.vectors.resize(n, n);
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(&info, dinfo.get(), sizeof(int),
                                  cudaMemcpyDeviceToHost, s),
                  "SymmetricEigen download", what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(r.values.data(), dw.get(), sizeof(double) * n,
                                  cudaMemcpyDeviceToHost, s),
                  "SymmetricEigen download", what));
  CARE_RETURN_IF_ERROR(ctx_->Check(
      cudaMemcpyAsync(r.vectors.data(), da.get(), sizeof(double) * n * n,
                      cudaMemcpyDeviceToHost, s),
      "SymmetricEigen download", what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaStreamSynchronize(s), "SymmetricEigen", what));
  if (info != 0) {
    return absl::InternalError(
        absl::StrCat(ctx_->label(), ": SymmetricEigen of ", what,
                     " did not converge (cusolverDnXsyevd info = ", info, ")"));
  }
  return r;
}

absl::StatusOr<SvdResult> CudaBackend::Svd(const Eigen::MatrixXd& a,
                                           bool compute_u, bool compute_v) {
  // gesvd wants m >= n: a wide matrix is solved as its transpose, whose U
  // and V are a's V and U.
  if (a.rows() < a.cols()) {
    CARE_ASSIGN_OR_RETURN(SvdResult t,
                          Svd(a.transpose(), compute_v, compute_u));
    std::swap(t.u, t.v);
    return t;
  }
  const int64_t m = a.rows(), n = a.cols(), k = n;  // k = min(m, n)
  SvdResult r;
  if (n == 0) return r;
  CARE_RETURN_IF_ERROR(ctx_->Enter());
  cudaStream_t s = ctx_->stream();
  const std::string what = absl::StrCat("[", m, ", ", n, "] fp64");
  const signed char jobu = compute_u ? 'S' : 'N';
  const signed char jobvt = compute_v ? 'S' : 'N';
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> da,
                        ctx_->Allocate(sizeof(double) * m * n, "Svd's matrix"));
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> ds,
                        ctx_->Allocate(sizeof(double) * k, "Svd's values"));
  std::shared_ptr<void> du, dvt;
  if (compute_u) {
    CARE_ASSIGN_OR_RETURN(du,
                          ctx_->Allocate(sizeof(double) * m * k, "Svd's U"));
  }
  if (compute_v) {
    CARE_ASSIGN_OR_RETURN(dvt,
                          ctx_->Allocate(sizeof(double) * k * n, "Svd's Vᵀ"));
  }
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> dinfo,
                        ctx_->Allocate(sizeof(int), "Svd's info"));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(da.get(), a.data(), sizeof(double) * m * n,
                                  cudaMemcpyHostToDevice, s),
                  "Svd upload", what));
  size_t dev_bytes = 0, host_bytes = 0;
  CARE_RETURN_IF_ERROR(ctx_->CheckSolver(
      cusolverDnXgesvd_bufferSize(
          ctx_->cusolver(), ctx_->cusolver_params(), jobu, jobvt, m, n,
          CUDA_R_64F, da.get(), m, CUDA_R_64F, ds.get(), CUDA_R_64F, du.get(),
          m, CUDA_R_64F, dvt.get(), k, CUDA_R_64F, &dev_bytes, &host_bytes),
      "Svd: cusolverDnXgesvd_bufferSize", what));
  CARE_ASSIGN_OR_RETURN(
      std::shared_ptr<void> work,
      ctx_->Allocate(std::max<size_t>(dev_bytes, 1), "Svd's workspace"));
  std::vector<char> host_work(std::max<size_t>(host_bytes, 1));
  CARE_RETURN_IF_ERROR(ctx_->CheckSolver(
      cusolverDnXgesvd(ctx_->cusolver(), ctx_->cusolver_params(), jobu, jobvt,
                       m, n, CUDA_R_64F, da.get(), m, CUDA_R_64F, ds.get(),
                       CUDA_R_64F, du.get(), m, CUDA_R_64F, dvt.get(), k,
                       CUDA_R_64F, work.get(), dev_bytes, host_work.data(),
                       host_bytes, static_cast<int*>(dinfo.get())),
      "Svd: cusolverDnXgesvd", what));
  int info = 0;
  r.values.resize(k);
  Eigen::MatrixXd vt;
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(&info, dinfo.get(), sizeof(int),
                                  cudaMemcpyDeviceToHost, s),
                  "Svd download", what));
  CARE_RETURN_IF_ERROR(
      ctx_->Check(cudaMemcpyAsync(r.values.data(), ds.get(), sizeof(double) * k,
                                  cudaMemcpyDeviceToHost, s),
                  "Svd download", what));
  if (compute_u) {
    r.u.resize(m, k);
    CARE_RETURN_IF_ERROR(ctx_->Check(
        cudaMemcpyAsync(r.u.data(), du.get(), sizeof(double) * m * k,
                        cudaMemcpyDeviceToHost, s),
        "Svd download", what));
  }
  if (compute_v) {
    vt.resize(k, n);
    CARE_RETURN_IF_ERROR(ctx_->Check(
        cudaMemcpyAsync(vt.data(), dvt.get(), sizeof(double) * k * n,
                        cudaMemcpyDeviceToHost, s),
        "Svd download", what));
  }
  CARE_RETURN_IF_ERROR(ctx_->Check(cudaStreamSynchronize(s), "Svd", what));
  if (info != 0) {
    return absl::InternalError(
        absl::StrCat(ctx_->label(), ": Svd of ", what,
                     " did not converge (cusolverDnXgesvd info = ", info, ")"));
  }
  if (compute_v) r.v = vt.transpose();  // [n, k]
  return r;
}

}  // namespace care::compute::cuda
