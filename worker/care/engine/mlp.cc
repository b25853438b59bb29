#include "care/engine/mlp.h"

#include <algorithm>

#include "base/status_macros.h"

namespace care::engine {

namespace {
// Rows per block: large enough for full-speed GEMMs, small enough that the
// two [rows, I] intermediates stay a few hundred MB at I = 28k.
constexpr int64_t kRowBlock = 2048;

absl::StatusOr<compute::Weight> Get(compute::Backend& backend,
                                    const TensorSource& source,
                                    WeightPrefetch* prefetch,
                                    const std::string& name, int64_t rows,
                                    int64_t cols) {
  if (prefetch != nullptr) {
    auto w = prefetch->Take(name, rows, cols);
    if (w.ok()) return w;
  }
  return LoadWeightOn(backend, source, name, rows, cols);
}
}  // namespace

absl::StatusOr<SwiGluWeights> LoadSwiGlu(compute::Backend& backend,
                                         const TensorSource& source,
                                         const std::string& prefix, int64_t D,
                                         int64_t I, WeightPrefetch* prefetch) {
  SwiGluWeights w;
  CARE_ASSIGN_OR_RETURN(w.gate, Get(backend, source, prefetch,
                                    prefix + "gate_proj.weight", I, D));
  CARE_ASSIGN_OR_RETURN(
      w.up, Get(backend, source, prefetch, prefix + "up_proj.weight", I, D));
  CARE_ASSIGN_OR_RETURN(w.down, Get(backend, source, prefetch,
                                    prefix + "down_proj.weight", D, I));
  return w;
}

absl::Status SwiGlu(compute::Backend& backend, const SwiGluWeights& w,
                    const compute::Matrix& x, compute::Matrix* y) {
  const int64_t rows = x.rows, I = w.gate.rows;
  compute::Matrix gate, up;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int64_t n = std::min(kRowBlock, rows - r0);
    const compute::Matrix xb = compute::RowsView(x, r0, n);  // [n, D]
    if (gate.rows != n) {
      CARE_ASSIGN_OR_RETURN(gate, backend.Allocate(n, I));
      CARE_ASSIGN_OR_RETURN(up, backend.Allocate(n, I));
    }
    CARE_RETURN_IF_ERROR(backend.Linear(xb, w.gate, nullptr, &gate, false));
    CARE_RETURN_IF_ERROR(backend.Linear(xb, w.up, nullptr, &up, false));
    CARE_RETURN_IF_ERROR(backend.SiluMul(up, &gate));   // [n, I]
    compute::Matrix yb = compute::RowsView(*y, r0, n);  // [n, D]
    CARE_RETURN_IF_ERROR(backend.Linear(gate, w.down, nullptr, &yb, false));
  }
  return absl::OkStatus();
}

}  // namespace care::engine
