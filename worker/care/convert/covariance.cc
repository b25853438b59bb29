#include "care/convert/covariance.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace care::convert {
namespace {

// Token rows per float32 product. Each float32 partial sum then covers at
// most this many terms (relative error ~ kBlockRows·2⁻²⁴ ≈ 1.5e-5 worst case,
// typically √kBlockRows·2⁻²⁴) before it is added to the float64 total.
constexpr int64_t kBlockRows = 256;
// Column tile of the lower triangle; tiles are independent GEMMs.
constexpr int64_t kTile = 128;

}  // namespace

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
  if (!x.allFinite()) {
    return absl::InvalidArgumentError(
        "covariance: activation block contains a non-finite value (NaN/inf)");
  }
  const int64_t tiles = (dim_ + kTile - 1) / kTile;
  // (i, j) tile pairs of the lower triangle, i >= j.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < tiles; ++i) {
    for (int64_t j = 0; j <= i; ++j) pairs.emplace_back(i, j);
  }
  for (int64_t r0 = 0; r0 < x.rows(); r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, x.rows() - r0);
    // Column-major copy: tiles slice contiguous columns.
    const Eigen::MatrixXf block = x.middleRows(r0, rows);  // [rows, D]
#pragma omp parallel for schedule(dynamic)
    for (int64_t p = 0; p < static_cast<int64_t>(pairs.size()); ++p) {
      const int64_t i0 = pairs[p].first * kTile;
      const int64_t j0 = pairs[p].second * kTile;
      const int64_t ni = std::min(kTile, dim_ - i0);
      const int64_t nj = std::min(kTile, dim_ - j0);
      // [ni, nj] float32 product, accumulated in float64.
      const Eigen::MatrixXf tile =
          block.middleCols(i0, ni).transpose() * block.middleCols(j0, nj);
      sum_.block(i0, j0, ni, nj) += tile.cast<double>();
    }
    abs_sum_ += block.cwiseAbs().colwise().sum().transpose().cast<double>();
  }
  tokens_ += x.rows();
  return absl::OkStatus();
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
