// CpuBackend's mixture-of-experts ops: top-k routing on the host, row
// gather / scatter, and the fixed-order sum of each token's expert rows.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"

namespace care::compute::cpu {

namespace {

absl::Status CheckIds(const char* op, const std::vector<int64_t>& rows,
                      int64_t limit) {
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": row id ", rows[i], " at position ", i,
                       " is outside [0, ", limit, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Routing> CpuBackend::RouteTopK(const Matrix& logits, int64_t k,
                                              bool renormalize) {
  const int64_t T = logits.rows, E = logits.cols;
  if (k < 1 || k > E) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RouteTopK: k = ", k, " is outside [1, ", E, "] (experts)"));
  }
  Routing r;
  r.tokens = T;
  r.k = k;
  r.experts.resize(T * k);
  r.weights.resize(T * k);
  std::vector<int64_t> order(E);
  std::vector<double> p(E);
  for (int64_t t = 0; t < T; ++t) {
    const float* row = logits.data + t * E;
    const float mx = *std::max_element(row, row + E);
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(double{row[e]} - mx);
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    // Highest probability first; the lower expert index wins ties.
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) {
                        return p[a] != p[b] ? p[a] > p[b] : a < b;
                      });
    double kept = 0.0;
    for (int64_t j = 0; j < k; ++j) kept += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[j];
      r.experts[t * k + j] = static_cast<int32_t>(e);
      r.weights[t * k + j] =
          static_cast<float>(renormalize ? p[e] / kept : p[e]);
    }
  }
  return r;
}

absl::StatusOr<Routing> CpuBackend::RouteGroupedTopK(const Matrix& logits,
                                                     const Matrix& bias,
                                                     const GroupedTopK& r) {
  CARE_RETURN_IF_ERROR(
      CheckShape("RouteGroupedTopK", "bias", bias, 1, logits.cols));
  return GroupedTopKOnHost(logits.data, logits.rows, logits.cols, bias.data, r);
}

absl::Status CpuBackend::GatherRows(const Matrix& x,
                                    const std::vector<int64_t>& rows,
                                    Matrix* out) {
  const int64_t n = rows.size(), C = x.cols;
  CARE_RETURN_IF_ERROR(CheckShape("GatherRows", "out", *out, n, C));
  CARE_RETURN_IF_ERROR(CheckIds("GatherRows", rows, x.rows));
#pragma omp parallel for schedule(static) if (n * C >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(x.data + rows[i] * C, C, out->data + i * C);
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::ScatterRows(const Matrix& x,
                                     const std::vector<int64_t>& rows,
                                     const std::vector<float>& scale,
                                     Matrix* out, bool accumulate) {
  const int64_t n = rows.size(), C = x.cols;
  CARE_RETURN_IF_ERROR(CheckShape("ScatterRows", "x", x, n, out->cols));
  if (!scale.empty() && static_cast<int64_t>(scale.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScatterRows: ", scale.size(), " scales for ", n, " rows"));
  }
  CARE_RETURN_IF_ERROR(CheckIds("ScatterRows", rows, out->rows));
#pragma omp parallel for schedule(static) if (n * C >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    Eigen::Map<Eigen::ArrayXf> dst(out->data + rows[i] * C, C);
    Eigen::Map<const Eigen::ArrayXf> src(x.data + i * C, C);
    if (scale.empty()) {
      if (accumulate) {
        dst += src;
      } else {
        dst = src;
      }
    } else if (accumulate) {
      dst += scale[i] * src;
    } else {
      dst = scale[i] * src;
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::SumRowGroups(const Matrix& x, int64_t k, Matrix* y) {
  if (k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SumRowGroups: k = ", k, " must be >= 1"));
  }
  const int64_t T = y->rows, C = y->cols;
  CARE_RETURN_IF_ERROR(CheckShape("SumRowGroups", "x", x, T * k, C));
#pragma omp parallel for schedule(static) if (T * C >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    Eigen::Map<Eigen::ArrayXf> dst(y->data + t * C, C);
    dst = Eigen::Map<const Eigen::ArrayXf>(x.data + t * k * C, C);
    for (int64_t j = 1; j < k; ++j) {
      dst += Eigen::Map<const Eigen::ArrayXf>(x.data + (t * k + j) * C, C);
    }
  }
  return absl::OkStatus();
}

}  // namespace care::compute::cpu
