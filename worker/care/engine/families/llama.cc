// Llama (LlamaForCausalLM): the GQA decoder as it is; q/k/v and o_proj
// biases when attention_bias (transformers' LlamaConfig).
#include "care/engine/families/gqa_family.h"

namespace care::engine {

const DecoderFamily& Llama() {
  static const GqaFamily family({.model_type = "llama"});
  return family;
}

}  // namespace care::engine
