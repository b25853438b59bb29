// Qwen2 (Qwen2ForCausalLM): the Llama layer with q/k/v biases always and
// never an o_proj bias, whatever attention_bias says (transformers' Qwen2).
#include "care/engine/families/gqa_family.h"

namespace care::engine {

const DecoderFamily& Qwen2() {
  static const GqaFamily family({.model_type = "qwen2",
                                 .qkv_bias = GqaTraits::Bias::kAlways,
                                 .o_proj_bias_with_qkv = false});
  return family;
}

}  // namespace care::engine
