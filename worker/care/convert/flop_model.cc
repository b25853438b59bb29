#include "care/convert/flop_model.h"

#include "care/io/deepseek_v3_config.h"

namespace care::convert {

namespace {

// deepseek_v3: q (low rank or not), kv_a, kv_b, o; attention over qk and v
// widths; router + k routed + shared experts, or the dense MLP.
double DeepseekV3LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len,
                                    int64_t layer) {
  const DeepseekV3Config& d = *c.fields<DeepseekV3Config>();
  const double D = c.hidden_size, H = c.num_attention_heads;
  const double qk = d.qk_head_dim(), dv = d.v_head_dim, r = d.kv_lora_rank;
  double total = d.q_lora_rank
                     ? 2 * (D * *d.q_lora_rank + *d.q_lora_rank * H * qk)
                     : 2 * D * H * qk;
  total += 2 * D * (r + d.qk_rope_head_dim);
  total += 2 * r * H * (d.qk_nope_head_dim + dv);
  total += 2 * H * dv * D;
  total += 2 * H * (qk + dv) * (seq_len + 1) / 2.0;
  if (c.IsMoeLayer(layer)) {
    const double im = d.moe_intermediate_size;
    total += 2 * D * d.n_routed_experts;
    total += (d.num_experts_per_tok + d.n_shared_experts) * 2 * 3 * D * im;
  } else {
    total += 2 * 3 * D * static_cast<double>(c.intermediate_size);
  }
  return total;
}

}  // namespace

double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len,
                          int64_t layer) {
  if (c.fields<DeepseekV3Config>() != nullptr) {
    return DeepseekV3LayerFlopsPerToken(c, seq_len, layer);
  }
  const double D = c.hidden_size, H = c.num_attention_heads, dh = c.head_dim;
  const double g = c.num_key_value_heads;
  // q, k, v, o projections: [D -> H·dh], 2 × [D -> g·dh], [H·dh -> D].
  double total = 2 * D * (2 * H * dh + 2 * g * dh);
  // Causal attention: per head QKᵀ and PV each 2·dh per visible pair;
  // averaged over the window, (T + 1) / 2 pairs per token.
  total += 2 * 2 * H * dh * (seq_len + 1) / 2.0;
  if (c.IsMoeLayer(layer)) {
    total += 2 * D * c.num_experts;  // router
    total += c.num_experts_per_tok * 2 * 3 * D * c.moe_intermediate_size;
  } else {
    total += 2 * 3 * D * static_cast<double>(c.intermediate_size);
  }
  return total;
}

double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len) {
  double total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    total += LayerFlopsPerToken(c, seq_len, l);
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

double FitFlopsPerLayer(const ModelConfig& c, int64_t calib_tokens,
                        int64_t heldout_tokens) {
  const double D = c.hidden_size, o = c.kv_width();
  const double covariance = D * D * static_cast<double>(calib_tokens);
  // Per projection: C·W [D,D]·[D,o], then Wᵀ·(C·W) [o,D]·[D,o].
  const double grams = 2 * (2 * D * D * o + 2 * D * o * o);
  // Per projection: X·W [N,D]·[D,o], then Pᵀ·P [o,N]·[N,o].
  const double heldout =
      2 * (2 * static_cast<double>(heldout_tokens) * (D * o + o * o));
  return covariance + grams + heldout;
}

}  // namespace care::convert
