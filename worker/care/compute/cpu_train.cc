// CpuBackend's training ops (backend.h "training"): the transposed GEMM of
// weight gradients, axpby, the squared distance, rotary embedding in both
// conventions and directions, the column-block adjoint of CopyColumns and
// Adam. The attention backward is in cpu_attention_backward.cc.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"
#include "care/compute/train_checks.h"

namespace care::compute::cpu {

absl::Status CpuBackend::MatMulTransposeA(const Matrix& a, const Matrix& b,
                                          Matrix* c, bool accumulate) {
  if (a.rows != b.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MatMulTransposeA: a is [", a.rows, ", ", a.cols, "], b [", b.rows,
        ", ", b.cols, "]: their rows (the summed dimension) differ"));
  }
  CARE_RETURN_IF_ERROR(CheckShape("MatMulTransposeA", "c", *c, a.cols, b.cols));
  if (c->size() == 0) return absl::OkStatus();
  MapRM out = Map(c);
  if (a.rows == 0) {
    if (!accumulate) out.setZero();
  } else if (accumulate) {
    out.noalias() += Map(a).transpose() * Map(b);  // [n, m]
  } else {
    out.noalias() = Map(a).transpose() * Map(b);  // [n, m]
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Axpby(double alpha, const Matrix& x, double beta,
                               Matrix* y) {
  CARE_RETURN_IF_ERROR(CheckShape("Axpby", "y", *y, x.rows, x.cols));
  if (y->size() == 0) return absl::OkStatus();
  const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
  const int64_t n = y->size();
  const float* in = x.data;
  float* out = y->data;
  if (beta == 0) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = a * in[i];
  } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = a * in[i] + b * out[i];
  }
  return absl::OkStatus();
}

absl::StatusOr<double> CpuBackend::SquaredDistance(const Matrix& a,
                                                   const Matrix& b) {
  CARE_RETURN_IF_ERROR(CheckShape("SquaredDistance", "b", b, a.rows, a.cols));
  // Fixed chunks summed in order: the result does not depend on the thread
  // count or schedule (an OpenMP reduction's combining order would).
  constexpr int64_t kChunks = 64;
  const int64_t n = a.size();
  std::vector<double> part(kChunks, 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < kChunks; ++c) {
    double s = 0;
    for (int64_t i = n * c / kChunks; i < n * (c + 1) / kChunks; ++i) {
      const double d = double{a.data[i]} - double{b.data[i]};
      s += d * d;
    }
    part[c] = s;
  }
  double sum = 0;
  for (const double s : part) sum += s;
  return sum;
}

absl::Status CpuBackend::ApplyRotary(const Matrix& cos, const Matrix& sin,
                                     int64_t head_dim, const RotaryOptions& o,
                                     Matrix* x) {
  CARE_RETURN_IF_ERROR(CheckRotary("ApplyRotary", cos, sin, head_dim, *x));
  const int64_t half = cos.cols, seq_len = cos.rows;
  const int64_t rows = x->rows, cols = x->cols, heads = cols / head_dim;
  // Partner of entry i: 2i+1 (interleaved) or i + r/2 (rotate_half); the
  // first of a pair sits at 2i or i.
  const int64_t first_step = o.interleaved ? 2 : 1;
  const int64_t partner = o.interleaved ? 1 : half;
  const float sign = o.inverse ? -1.0f : 1.0f;
  float* data = x->data;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t t = 0; t < rows; ++t) {
    const int64_t p = t % seq_len;
    const float* c = cos.data + p * half;
    const float* s = sin.data + p * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = data + t * cols + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        float& u = v[i * first_step];
        float& w = v[i * first_step + partner];
        const float a = u, b = w, si = sign * s[i];
        u = a * c[i] - b * si;
        w = b * c[i] + a * si;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::AddColumns(const Matrix& src, const ColumnBlocks& b,
                                    Matrix* dst) {
  CARE_RETURN_IF_ERROR(CheckAddColumns(src, b, *dst));
  if (b.groups == 0 || b.width == 0 || src.rows == 0) return absl::OkStatus();
  const int64_t rows = src.rows;
#pragma omp parallel for schedule(static) if (rows * b.groups * b.width >= \
                                              kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < b.groups; ++g) {  // in order: a fixed sum
      float* d = dst->data + r * dst->cols + b.dst_col0 + g * b.dst_stride;
      const float* s = src.data + r * src.cols + b.src_col0 + g * b.src_stride;
      for (int64_t j = 0; j < b.width; ++j) d[j] += s[j];
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::AdamUpdate(const Matrix& grad, const AdamStep& step,
                                    Matrix* param, Matrix* m1, Matrix* m2) {
  CARE_RETURN_IF_ERROR(CheckAdam(grad, step, *param, *m1, *m2));
  // fp32 scalars, as the cuda kernel and heal_layer.cc's float path.
  const float b1 = static_cast<float>(step.beta1);
  const float b2 = static_cast<float>(step.beta2);
  const float ob1 = static_cast<float>(1 - step.beta1);
  const float ob2 = static_cast<float>(1 - step.beta2);
  const float c1 = static_cast<float>(step.correction1);
  const float c2 = static_cast<float>(step.correction2);
  const float lr = static_cast<float>(step.lr);
  const float eps = static_cast<float>(step.eps);
  const float gs = static_cast<float>(step.grad_scale);
  const int64_t n = param->size();
  const float* g = grad.data;
  float* p = param->data;
  float* a1 = m1->data;
  float* a2 = m2->data;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * gs;
    a1[i] = b1 * a1[i] + ob1 * gi;
    a2[i] = b2 * a2[i] + ob2 * (gi * gi);
    p[i] -= lr * (a1[i] / c1) / (std::sqrt(a2[i] / c2) + eps);
  }
  return absl::OkStatus();
}

}  // namespace care::compute::cpu
