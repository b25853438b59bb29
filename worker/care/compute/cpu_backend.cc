// CpuBackend: memory, ForEach, GEMMs and the elementwise ops. Attention,
// MoE, scoring, Grams and dense linear algebra are in cpu_*.cc.
#include "care/compute/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_gemm.h"
#include "care/io/dtype.h"

namespace care::compute {

std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(options);
}

namespace cpu {

namespace {

// y[0..n) = x[0..n) * rsqrt(mean(x²) + eps) * w; sum in double for long rows.
inline void NormRow(const float* x, const float* w, int64_t n, double eps,
                    float* y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double{x[i]} * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

absl::Status CheckSame(const char* op, const Matrix& a, const Matrix& b) {
  return CheckShape(op, "second operand", b, a.rows, a.cols);
}

// Elements per chunk of LoadWeight's parallel conversion (1 MiB of output).
constexpr int64_t kConvertChunk = int64_t{1} << 18;

}  // namespace

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : pool_(BufferPool::Create(options.max_idle_bytes)) {}

absl::StatusOr<Matrix> CpuBackend::Allocate(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu Allocate: negative shape [", rows, ", ", cols, "]"));
  }
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  if (rows * cols == 0) return m;
  const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(float);
  m.storage = pool_->Take(bytes);
  if (m.storage == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cpu: out of memory allocating ", bytes, " bytes"));
  }
  m.data = static_cast<float*>(m.storage.get());
  return m;
}

absl::StatusOr<Matrix> CpuBackend::Upload(const float* host, int64_t rows,
                                          int64_t cols) {
  CARE_ASSIGN_OR_RETURN(Matrix m, Allocate(rows, cols));
  if (m.size() > 0) std::memcpy(m.data, host, m.size() * sizeof(float));
  return m;
}

absl::Status CpuBackend::Download(const Matrix& m, float* host) {
  if (m.size() > 0) std::memcpy(host, m.data, m.size() * sizeof(float));
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyColumns(const Matrix& src, const ColumnBlocks& b,
                                     Matrix* dst) {
  CARE_RETURN_IF_ERROR(CheckColumnBlocks(src, b, *dst));
  if (b.groups == 0 || b.width == 0 || src.rows == 0) return absl::OkStatus();
  const int64_t rows = src.rows, bytes = b.width * sizeof(float);
  const float* s = src.data;
  float* d = dst->data;
#pragma omp parallel for schedule(static) if (rows * b.groups * b.width >= \
                                              kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < b.groups; ++g) {
      std::memcpy(d + r * dst->cols + b.dst_col0 + g * b.dst_stride,
                  s + r * src.cols + b.src_col0 + g * b.src_stride, bytes);
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Copy(const Matrix& src, Matrix* dst) {
  CARE_RETURN_IF_ERROR(CheckSame("Copy", src, *dst));
  if (src.size() > 0 && src.data != dst->data) {
    std::memcpy(dst->data, src.data, src.size() * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::SetZero(Matrix* m) {
  if (m->size() > 0) std::memset(m->data, 0, m->size() * sizeof(float));
  return absl::OkStatus();
}

absl::StatusOr<Weight> CpuBackend::LoadWeight(const HostTensor& t) {
  if (t.rows < 1 || t.cols < 1 || t.data == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cpu LoadWeight: empty or null tensor [", t.rows, ", ", t.cols, "]"));
  }
  CARE_ASSIGN_OR_RETURN(Matrix m, Allocate(t.rows, t.cols));
  const int64_t n = t.rows * t.cols;
  const io::DType dtype = t.dtype == DType::kF32   ? io::DType::kF32
                          : t.dtype == DType::kF16 ? io::DType::kF16
                                                   : io::DType::kBF16;
  // Split over the threads: run serially, the conversion (and the page
  // faults on the mapped source) left the other cores idle between the
  // GEMMs, ~1 s of a 1B conversion's wall time (docs/performance.md,
  // "Against PyTorch"). Chunks of whole cache lines of output.
  const int64_t chunks = (n + kConvertChunk - 1) / kConvertChunk;
  const size_t esize = io::DTypeSize(dtype);
  const auto* src = static_cast<const unsigned char*>(t.data);
  std::vector<absl::Status> status(chunks);
#pragma omp parallel for schedule(static) if (chunks > 1 && !omp_in_parallel())
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i = c * kConvertChunk;
    status[c] = io::ConvertToF32(
        dtype, src + i * esize,
        static_cast<size_t>(std::min(kConvertChunk, n - i)), m.data + i);
  }
  for (const absl::Status& s : status) CARE_RETURN_IF_ERROR(s);
  Weight w;
  w.data = m.data;
  w.dtype = DType::kF32;
  w.rows = t.rows;
  w.cols = t.cols;
  w.storage = std::move(m.storage);
  return w;
}

absl::Status CpuBackend::ForEach(
    int64_t n, const std::function<absl::Status(int64_t)>& fn) {
  std::vector<absl::Status> status(n);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) status[i] = fn(i);
  for (const absl::Status& s : status) CARE_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status CpuBackend::Linear(const Matrix& x, const Weight& w,
                                const Matrix* bias, Matrix* y,
                                bool accumulate) {
  CARE_RETURN_IF_ERROR(CheckShape("Linear", "x", x, x.rows, w.cols));
  CARE_RETURN_IF_ERROR(CheckShape("Linear", "y", *y, x.rows, w.rows));
  if (bias != nullptr) {
    CARE_RETURN_IF_ERROR(CheckShape("Linear", "bias", *bias, 1, w.rows));
  }
  if (y->size() == 0) return absl::OkStatus();
  MapRM out = Map(y);
  if (x.cols == 0) {
    if (!accumulate) out.setZero();
  } else {  // y [n, out] (+)= x [n, in] · wᵀ
    cpu_gemm::GemmOnThreads({.m = x.rows,
                             .n = w.rows,
                             .k = x.cols,
                             .a = x.data,
                             .lda = x.cols,
                             .b = static_cast<const float*>(w.data),
                             .ldb = w.cols,
                             .c = y->data,
                             .ldc = y->cols,
                             .accumulate = accumulate},
                            /*transpose_b=*/true);
  }
  if (bias != nullptr) out.rowwise() += ConstMapRow(bias->data, bias->cols);
  return absl::OkStatus();
}

absl::Status CpuBackend::MatMul(const Matrix& a, const Matrix& b,
                                bool transpose_b, Matrix* c, bool accumulate) {
  const int64_t k = transpose_b ? b.cols : b.rows;
  const int64_t m = transpose_b ? b.rows : b.cols;
  CARE_RETURN_IF_ERROR(CheckShape("MatMul", "a", a, a.rows, k));
  CARE_RETURN_IF_ERROR(CheckShape("MatMul", "c", *c, a.rows, m));
  if (c->size() == 0) return absl::OkStatus();
  if (k == 0) {
    if (!accumulate) Map(c).setZero();
  } else {  // c [a.rows, m] (+)= a · op(b)
    cpu_gemm::GemmOnThreads({.m = a.rows,
                             .n = m,
                             .k = k,
                             .a = a.data,
                             .lda = a.cols,
                             .b = b.data,
                             .ldb = b.cols,
                             .c = c->data,
                             .ldc = c->cols,
                             .accumulate = accumulate},
                            transpose_b);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNorm(const Matrix& x, const Matrix& weight,
                                 double eps, Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckSame("RmsNorm", x, *y));
  CARE_RETURN_IF_ERROR(CheckShape("RmsNorm", "weight", weight, 1, x.cols));
  const int64_t rows = x.rows, n = x.cols;
  const float* in = x.data;
  float* out = y->data;
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    NormRow(in + r * n, weight.data, n, eps, out + r * n);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNormGroups(const Matrix& weight, double eps,
                                       int64_t width, Matrix* x) {
  if (width < 1 || x->cols % width != 0) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNormGroups: width ",
                                                   width, " does not divide ",
                                                   x->cols, " columns"));
  }
  CARE_RETURN_IF_ERROR(CheckShape("RmsNormGroups", "weight", weight, 1, width));
  const int64_t rows = x->rows, cols = x->cols, groups = cols / width;
  float* data = x->data;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float* p = data + r * cols + g * width;
      NormRow(p, weight.data, width, eps, p);
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::ApplyRope(const Matrix& cos, const Matrix& sin,
                                   int64_t head_dim, Matrix* x) {
  CARE_RETURN_IF_ERROR(CheckShape("ApplyRope", "sin", sin, cos.rows, cos.cols));
  const int64_t half = cos.cols, seq_len = cos.rows;
  if (head_dim < 1 || x->cols % head_dim != 0 || 2 * half > head_dim ||
      seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ApplyRope: head_dim ", head_dim, " must divide ", x->cols,
                     " columns and hold the rotary width ", 2 * half,
                     " (seq_len ", seq_len, ")"));
  }
  const int64_t rows = x->rows, cols = x->cols, heads = cols / head_dim;
  float* data = x->data;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t p = t % seq_len;
    const float* c = cos.data + p * half;
    const float* s = sin.data + p * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = data + t * cols + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::SiluMul(const Matrix& up, Matrix* gate) {
  CARE_RETURN_IF_ERROR(CheckSame("SiluMul", up, *gate));
  const int64_t rows = gate->rows, cols = gate->cols;
  // silu(gate) * up, with Eigen's vectorized exp.
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<Eigen::ArrayXf> g(gate->data + r * cols, cols);
    Eigen::Map<const Eigen::ArrayXf> u(up.data + r * cols, cols);
    g = g / (1.0f + (-g).exp()) * u;
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Add(const Matrix& x, Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckSame("Add", x, *y));
  if (y->size() > 0) Map(y) += Map(x);
  return absl::OkStatus();
}

absl::Status CpuBackend::AddRow(const Matrix& b, Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckShape("AddRow", "b", b, 1, y->cols));
  if (y->size() > 0) Map(y).rowwise() += ConstMapRow(b.data, b.cols);
  return absl::OkStatus();
}

}  // namespace cpu
}  // namespace care::compute
