#include "care/engine/rms_norm.h"

#include <cmath>
#include <cstdint>

#include "care/engine/parallel.h"

namespace care::engine {

using internal::kParallelMin;

namespace {
// y[0..n) = x[0..n) * rsqrt(mean(x²) + eps) * w; sum in double for long rows.
inline void NormRow(const float* x, const float* w, int64_t n, double eps,
                    float* y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double{x[i]} * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}
}  // namespace

void RmsNorm(const MatrixRM& x, const Eigen::RowVectorXf& weight, double eps,
             MatrixRM* y) {
  const int64_t rows = x.rows(), n = x.cols();
  if (y != &x) y->resize(rows, n);
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    NormRow(x.data() + r * n, weight.data(), n, eps, y->data() + r * n);
  }
}

void RmsNormGroupsInPlace(const Eigen::RowVectorXf& weight, double eps,
                          int64_t width, MatrixRM* x) {
  const int64_t rows = x->rows(), groups = x->cols() / width;
#pragma omp parallel for schedule(static) if (x->size() >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float* p = x->data() + r * x->cols() + g * width;
      NormRow(p, weight.data(), width, eps, p);
    }
  }
}

}  // namespace care::engine
