// Grouped-query causal self-attention over a batch of windows, after RoPE.
// Query head h reads KV head h / (n_h / g). Windows are independent; the
// work is split over (window, query head) pairs with OpenMP.
#ifndef CARE_ENGINE_ATTENTION_H_
#define CARE_ENGINE_ATTENTION_H_

#include <cstdint>

#include "care/io/tensor.h"

namespace care::engine {

struct AttentionShape {
  int64_t windows = 0;
  int64_t seq_len = 0;
  int64_t heads = 0;     // n_h
  int64_t kv_heads = 0;  // g, divides n_h
  int64_t head_dim = 0;  // d_h
};

// q: [windows * seq_len, n_h * d_h]; k, v: [windows * seq_len, g * d_h].
// Writes out [windows * seq_len, n_h * d_h] = softmax(q kᵀ / sqrt(d_h) +
// causal mask) v, per window and head.
void CausalAttention(const AttentionShape& shape, const MatrixRM& q,
                     const MatrixRM& k, const MatrixRM& v, MatrixRM* out);

}  // namespace care::engine

#endif  // CARE_ENGINE_ATTENTION_H_
