#include "care/engine/mlp.h"

#include <algorithm>
#include <cmath>

#include "care/engine/parallel.h"
#include "care/util/status_macros.h"

namespace care::engine {

using internal::kParallelMin;

namespace {
// Rows per block: large enough for full-speed GEMMs, small enough that the
// two [rows, I] intermediates stay a few hundred MB at I = 28k.
constexpr int64_t kRowBlock = 2048;
}  // namespace

absl::StatusOr<SwiGluWeights> LoadSwiGlu(const TensorSource& source,
                                         const std::string& prefix, int64_t D,
                                         int64_t I) {
  SwiGluWeights w;
  CARE_ASSIGN_OR_RETURN(
      w.gate, LoadChecked(source, prefix + "gate_proj.weight", {I, D}));
  CARE_ASSIGN_OR_RETURN(w.up,
                        LoadChecked(source, prefix + "up_proj.weight", {I, D}));
  CARE_ASSIGN_OR_RETURN(
      w.down, LoadChecked(source, prefix + "down_proj.weight", {D, I}));
  return w;
}

void SwiGlu(const SwiGluWeights& w, const MatrixRM& x, MatrixRM* y) {
  const int64_t rows = x.rows(), D = x.cols();
  y->resize(rows, D);
  MatrixRM gate, up;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t n = std::min(kRowBlock, rows - r0);
    auto xb = x.middleRows(r0, n);                      // [n, D]
    gate.noalias() = xb * w.gate.matrix().transpose();  // [n, I]
    up.noalias() = xb * w.up.matrix().transpose();      // [n, I]
    // silu(gate) * up, with Eigen's vectorized exp.
#pragma omp parallel for schedule(static) if (gate.size() >= kParallelMin)
    for (int64_t r = 0; r < n; ++r) {
      auto g = gate.row(r).array();
      g = g / (1.0f + (-g).exp()) * up.row(r).array();
    }
    y->middleRows(r0, n).noalias() = gate * w.down.matrix().transpose();
  }
}

}  // namespace care::engine
