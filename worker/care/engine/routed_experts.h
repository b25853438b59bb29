// The routed experts of a mixture-of-experts layer (Qwen3-MoE, DeepSeek-V3):
// each SwiGLU expert runs only on the tokens routed to it, its weights read
// only when some token chose it.
#ifndef CARE_ENGINE_ROUTED_EXPERTS_H_
#define CARE_ENGINE_ROUTED_EXPERTS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "care/compute/backend.h"
#include "care/io/tensor_source.h"

namespace care::engine {

// y [T, D] = Σ_j weight(t, j) · expert_{e(t, j)}(x_t) over the k choices of
// `routing`, experts "model.layers.<layer>.mlp.experts.<e>." of width I.
// Token t's choices are summed in ascending expert order whatever the thread
// schedule, so results do not depend on the thread count. y must not alias x.
absl::Status RunRoutedExperts(compute::Backend& be, const TensorSource& weights,
                              int64_t layer, const compute::Matrix& x,
                              const compute::Routing& routing,
                              int64_t num_experts, int64_t I,
                              compute::Matrix* y);

}  // namespace care::engine

#endif  // CARE_ENGINE_ROUTED_EXPERTS_H_
