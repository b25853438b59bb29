// The SwiGLU MLP of Llama/Qwen: down(silu(x·W_gateᵀ) ⊙ (x·W_upᵀ)), on a
// compute backend.
#ifndef CARE_ENGINE_MLP_H_
#define CARE_ENGINE_MLP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/weight_loader.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct SwiGluWeights {
  compute::Weight gate;  // [I, D]
  compute::Weight up;    // [I, D]
  compute::Weight down;  // [D, I]
};

// Loads "<prefix>gate_proj.weight", up_proj, down_proj with shapes checked
// against hidden size D and width I; taken from `prefetch` when it holds
// them (may be null).
absl::StatusOr<SwiGluWeights> LoadSwiGlu(compute::Backend& backend,
                                         const TensorSource& source,
                                         const std::string& prefix, int64_t D,
                                         int64_t I, WeightPrefetch* prefetch);

// y [rows, D] = SwiGLU(x [rows, D]); processed in row blocks so the [rows, I]
// intermediates stay bounded. y must not alias x.
absl::Status SwiGlu(compute::Backend& backend, const SwiGluWeights& w,
                    const compute::Matrix& x, compute::Matrix* y);

}  // namespace care::engine

#endif  // CARE_ENGINE_MLP_H_
