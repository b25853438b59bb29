// CpuBackend's second-moment accumulator: fp32 products of 256-row blocks
// over 128-column tiles of the lower triangle, added to an fp64 total.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"
#include "care/compute/cpu_gemm.h"
#include "care/compute/gram_update.h"

namespace care::compute::cpu {

namespace {

// Token rows per float32 product. Each float32 partial sum then covers at
// most this many terms (relative error ~ kBlockRows·2⁻²⁴ ≈ 1.5e-5 worst case,
// typically √kBlockRows·2⁻²⁴) before it is added to the float64 total.
constexpr int64_t kBlockRows = 256;
// Column tile of the lower triangle; tiles are independent GEMMs.
constexpr int64_t kTile = 128;

struct HostGram {
  Eigen::MatrixXd sum;      // [D, D] Σ xᵀx, lower triangle valid
  Eigen::VectorXd abs_sum;  // [D] Σ |x|
};

}  // namespace

absl::StatusOr<Gram> CpuBackend::NewGram(int64_t dim) {
  if (dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("NewGram: dimension ", dim, " must be >= 1"));
  }
  auto h = std::make_shared<HostGram>();
  h->sum = Eigen::MatrixXd::Zero(dim, dim);
  h->abs_sum = Eigen::VectorXd::Zero(dim);
  Gram g;
  g.dim = dim;
  g.storage = std::move(h);
  return g;
}

absl::Status CpuBackend::GramAdd(const Matrix& x, Gram* g) {
  auto* h = static_cast<HostGram*>(g->storage.get());
  if (h == nullptr) {
    return absl::InvalidArgumentError("GramAdd: Gram was not made");
  }
  CARE_RETURN_IF_ERROR(
      AccumulateGram(x.data, x.rows, x.cols, &h->sum, &h->abs_sum));
  g->tokens += x.rows;
  return absl::OkStatus();
}

absl::StatusOr<GramHost> CpuBackend::GramDownload(const Gram& g) {
  const auto* h = static_cast<const HostGram*>(g.storage.get());
  if (h == nullptr) {
    return absl::InvalidArgumentError("GramDownload: Gram was not made");
  }
  GramHost out;
  out.sum = h->sum.triangularView<Eigen::Lower>();
  out.sum.triangularView<Eigen::StrictlyUpper>() =
      out.sum.triangularView<Eigen::StrictlyLower>().transpose();
  out.abs_sum = h->abs_sum;
  out.tokens = g.tokens;
  return out;
}

}  // namespace care::compute::cpu

namespace care::compute {

namespace {

// True when no element is NaN or inf (exponent bits all ones). Eigen's
// allFinite() is a scalar x - x == x - x loop: at 8,192 × 2,048 activations
// per layer it was two thirds of AccumulateGram's own time in the 1B
// conversion profile (docs/performance.md, "Against PyTorch"); this integer
// OR-reduction vectorizes.
bool AllFinite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

}  // namespace

absl::Status AccumulateGram(const float* x, int64_t rows, int64_t dim,
                            Eigen::MatrixXd* sum, Eigen::VectorXd* abs_sum) {
  using cpu::kBlockRows;
  using cpu::kTile;
  if (dim != sum->rows() || rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("covariance: activation block has width ", dim,
                     ", expected the hidden size ", sum->rows()));
  }
  if (rows == 0) return absl::OkStatus();
  const cpu::ConstMapRM all(x, rows, dim);
  if (!AllFinite(x, rows * dim)) {
    return absl::InvalidArgumentError(
        "covariance: activation block contains a non-finite value (NaN/inf)");
  }
  const int64_t tiles = (dim + kTile - 1) / kTile;
  // (i, j) tile pairs of the lower triangle, i >= j.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t i = 0; i < tiles; ++i) {
    for (int64_t j = 0; j <= i; ++j) pairs.emplace_back(i, j);
  }
  for (int64_t r0 = 0; r0 < rows; r0 += kBlockRows) {
    const int64_t n = std::min(kBlockRows, rows - r0);
    // Column-major copy: tiles slice contiguous columns.
    const Eigen::MatrixXf block = all.middleRows(r0, n);  // [n, D]
#pragma omp parallel for schedule(dynamic)
    for (int64_t p = 0; p < static_cast<int64_t>(pairs.size()); ++p) {
      const int64_t i0 = pairs[p].first * kTile;
      const int64_t j0 = pairs[p].second * kTile;
      const int64_t ni = std::min(kTile, dim - i0);
      const int64_t nj = std::min(kTile, dim - j0);
      // [ni, nj] float32 product, accumulated in float64. The column-major
      // column slices are row-major [ni, n] and [nj, n]: tile = A·Bᵀ.
      cpu::MatrixRM tile(ni, nj);
      cpu_gemm::GemmNT({.m = ni,
                        .n = nj,
                        .k = n,
                        .a = block.data() + i0 * n,
                        .lda = n,
                        .b = block.data() + j0 * n,
                        .ldb = n,
                        .c = tile.data(),
                        .ldc = nj});
      sum->block(i0, j0, ni, nj) += tile.cast<double>();
    }
    *abs_sum += block.cwiseAbs().colwise().sum().transpose().cast<double>();
  }
  return absl::OkStatus();
}

}  // namespace care::compute
