// The SwiGLU MLP of Llama/Qwen: down(silu(x·W_gateᵀ) ⊙ (x·W_upᵀ)).
#ifndef CARE_ENGINE_MLP_H_
#define CARE_ENGINE_MLP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct SwiGluWeights {
  Tensor gate;  // [I, D]
  Tensor up;    // [I, D]
  Tensor down;  // [D, I]
};

// Loads "<prefix>gate_proj.weight", up_proj, down_proj with shapes checked
// against hidden size D and width I.
absl::StatusOr<SwiGluWeights> LoadSwiGlu(const TensorSource& source,
                                         const std::string& prefix, int64_t D,
                                         int64_t I);

// y [rows, D] = SwiGLU(x [rows, D]); processed in row blocks so the [rows, I]
// intermediates stay bounded. y must not alias x.
void SwiGlu(const SwiGluWeights& w, const MatrixRM& x, MatrixRM* y);

}  // namespace care::engine

#endif  // CARE_ENGINE_MLP_H_
