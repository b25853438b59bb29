#include "flop_model.h"

namespace care::bench {

double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len) {
  const double D = c.hidden_size, H = c.num_attention_heads, dh = c.head_dim;
  const double g = c.num_key_value_heads;
  double total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    // q, k, v, o projections: [D -> H·dh], 2 × [D -> g·dh], [H·dh -> D].
    total += 2 * D * (2 * H * dh + 2 * g * dh);
    // Causal attention: per head QKᵀ and PV each 2·dh per visible pair;
    // averaged over the window, (T + 1) / 2 pairs per token.
    total += 2 * 2 * H * dh * (seq_len + 1) / 2.0;
    if (c.IsMoeLayer(l)) {
      total += 2 * D * c.num_experts;  // router
      total += c.num_experts_per_tok * 2 * 3 * D * c.moe_intermediate_size;
    } else {
      total += 2 * 3 * D * static_cast<double>(c.intermediate_size);
    }
  }
  return total;
}

double HeadFlopsPerToken(const ModelConfig& c) {
  return 2.0 * c.hidden_size * c.vocab_size;
}

double ForwardFlops(const ModelConfig& c, int64_t windows, int64_t seq_len,
                    int64_t scored) {
  return static_cast<double>(windows) * seq_len *
             LayerFlopsPerToken(c, seq_len) +
         static_cast<double>(scored) * HeadFlopsPerToken(c);
}

}  // namespace care::bench
