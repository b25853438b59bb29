#include "care/convert/covariance.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/gram_update.h"

namespace care::convert {
CovarianceAccumulator::CovarianceAccumulator(int64_t dim)
    : dim_(dim),
      sum_(Eigen::MatrixXd::Zero(dim, dim)),
      abs_sum_(Eigen::VectorXd::Zero(dim)) {}

absl::Status CovarianceAccumulator::Add(const Eigen::Ref<const MatrixRM>& x) {
  if (x.cols() != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("covariance: activation block has width ", x.cols(),
                     ", expected the hidden size ", dim_));
  }
  // Rows of a row-major Ref are contiguous with stride cols: one dense block.
  if (x.rows() > 0 && x.outerStride() != x.cols()) {
    const MatrixRM dense = x;
    return Add(dense);
  }
  CARE_RETURN_IF_ERROR(
      compute::AccumulateGram(x.data(), x.rows(), dim_, &sum_, &abs_sum_));
  tokens_ += x.rows();
  return absl::OkStatus();
}

CovarianceAccumulator CovarianceAccumulator::FromGram(
    const compute::GramHost& gram) {
  CovarianceAccumulator acc(gram.sum.rows());
  acc.sum_ = gram.sum;
  acc.abs_sum_ = gram.abs_sum;
  acc.tokens_ = gram.tokens;
  return acc;
}

absl::Status CovarianceAccumulator::Merge(const CovarianceAccumulator& other) {
  if (other.dim_ != dim_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "covariance: cannot merge width ", other.dim_, " into width ", dim_));
  }
  sum_ += other.sum_;
  abs_sum_ += other.abs_sum_;
  tokens_ += other.tokens_;
  return absl::OkStatus();
}

Eigen::MatrixXd CovarianceAccumulator::Covariance() const {
  if (tokens_ == 0) return Eigen::MatrixXd::Zero(dim_, dim_);
  Eigen::MatrixXd c = sum_.triangularView<Eigen::Lower>();
  c.triangularView<Eigen::StrictlyUpper>() =
      c.triangularView<Eigen::StrictlyLower>().transpose();
  return c / static_cast<double>(tokens_);
}

Eigen::VectorXd CovarianceAccumulator::MeanAbs() const {
  if (tokens_ == 0) return Eigen::VectorXd::Zero(dim_);
  return abs_sum_ / static_cast<double>(tokens_);
}

}  // namespace care::convert
