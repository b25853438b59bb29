// Qwen3 (Qwen3ForCausalLM): the Llama layer plus a per-head RMSNorm of q and
// k (self_attn.{q,k}_norm.weight [d_h]) before RoPE; head_dim defaults to
// 128, decoupled from hidden_size / num_attention_heads; biases follow
// attention_bias on q/k/v and o_proj alike (transformers' Qwen3Config).
#include "care/engine/families/gqa_family.h"

namespace care::engine {

const DecoderFamily& Qwen3() {
  static const GqaFamily family(
      {.model_type = "qwen3", .default_head_dim = 128, .qk_norm = true});
  return family;
}

}  // namespace care::engine
