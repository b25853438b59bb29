// RMSNorm as in HF Llama/Qwen: y = x / sqrt(mean(x²) + eps) * weight.
#ifndef CARE_ENGINE_RMS_NORM_H_
#define CARE_ENGINE_RMS_NORM_H_

#include "care/io/tensor.h"

namespace care::engine {

// Row-wise over x [rows, n]; weight [n]; writes y [rows, n] (may alias x).
void RmsNorm(const MatrixRM& x, const Eigen::RowVectorXf& weight, double eps,
             MatrixRM* y);

// In place, per group of `width` columns (Qwen3 q_norm/k_norm applied to each
// head of a [rows, heads * width] matrix); weight [width].
void RmsNormGroupsInPlace(const Eigen::RowVectorXf& weight, double eps,
                          int64_t width, MatrixRM* x);

}  // namespace care::engine

#endif  // CARE_ENGINE_RMS_NORM_H_
