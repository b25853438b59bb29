// The host (CPU) second-moment update, shared by the CPU backend's GramAdd
// and convert::CovarianceAccumulator so both accumulate identically.
#ifndef CARE_COMPUTE_GRAM_UPDATE_H_
#define CARE_COMPUTE_GRAM_UPDATE_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/status.h"

namespace care::compute {

// sum [D, D] (lower triangle) += xᵀx and abs_sum [D] += Σ|x| for the rows of
// x [rows, D] (row-major host memory): fp32 products over blocks of 256 rows
// and 128-column tiles, each added to the fp64 totals. InvalidArgument when
// dim does not match sum, or x holds a NaN/inf (nothing is added then).
absl::Status AccumulateGram(const float* x, int64_t rows, int64_t dim,
                            Eigen::MatrixXd* sum, Eigen::VectorXd* abs_sum);

}  // namespace care::compute

#endif  // CARE_COMPUTE_GRAM_UPDATE_H_
