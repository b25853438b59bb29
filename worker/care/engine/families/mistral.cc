// Mistral (MistralForCausalLM): the Llama layer without biases (transformers'
// MistralConfig has no attention_bias), and a sliding attention window that
// the engine does not implement: windows longer than it are refused rather
// than silently attending further back than the model was trained to.
#include "care/engine/families/gqa_family.h"

namespace care::engine {

const DecoderFamily& Mistral() {
  static const GqaFamily family({.model_type = "mistral",
                                 .qkv_bias = GqaTraits::Bias::kNever,
                                 .sliding_window = true});
  return family;
}

}  // namespace care::engine
