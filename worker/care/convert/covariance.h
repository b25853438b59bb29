// Per-layer second-moment statistics of the k/v-projection input X
// ([tokens, D], post-norm hidden states): C = (1/N) Σ xᵀx (uncentred,
// method.md §2) and mean |x| per channel (for ASVD). Accumulated in float64
// from float32 blocks, using the symmetry of xᵀx (lower triangle only), by
// the same code as the CPU backend's GramAdd (compute/gram_update.h); a
// backend's Gram converts with FromGram.
#ifndef CARE_CONVERT_COVARIANCE_H_
#define CARE_CONVERT_COVARIANCE_H_

#include <Eigen/Core>
#include <cstdint>

#include "absl/status/status.h"
#include "care/compute/backend.h"
#include "care/io/tensor.h"

namespace care::convert {

class CovarianceAccumulator {
 public:
  explicit CovarianceAccumulator(int64_t dim);

  // Adds the rows of `x` ([tokens, D]). InvalidArgument when the width is not
  // D or a value is not finite (a NaN would poison every rank decision).
  absl::Status Add(const Eigen::Ref<const MatrixRM>& x);
  // The statistics a backend accumulated (Backend::GramAdd / GramDownload).
  static CovarianceAccumulator FromGram(const compute::GramHost& gram);
  // Adds another accumulator's statistics (same D), e.g. from another thread.
  absl::Status Merge(const CovarianceAccumulator& other);

  int64_t dim() const { return dim_; }
  int64_t tokens() const { return tokens_; }

  // C = (1/N) Σ xᵀx, full symmetric [D, D]; zero when no token was added.
  Eigen::MatrixXd Covariance() const;
  // (1/N) Σ |x| per channel, [D]; zero when no token was added.
  Eigen::VectorXd MeanAbs() const;

 private:
  int64_t dim_;
  int64_t tokens_ = 0;
  Eigen::MatrixXd sum_;      // [D, D] Σ xᵀx, lower triangle valid.
  Eigen::VectorXd abs_sum_;  // [D] Σ |x|.
};

}  // namespace care::convert

#endif  // CARE_CONVERT_COVARIANCE_H_
