#include "care/engine/families.h"

#include "absl/strings/str_cat.h"
#include "care/engine/decoder_family.h"

namespace care::engine {

// The table: one row per family, each defined in families/<model_type>.cc.
// The order is the order error messages list them in.
const DecoderFamily& Llama();
const DecoderFamily& Mistral();
const DecoderFamily& Qwen2();
const DecoderFamily& Qwen3();
const DecoderFamily& Qwen3Moe();
const DecoderFamily& DeepseekV3();

ModelFamilies Families() {
  static const ModelFamily* const kFamilies[] = {
      &Llama(), &Mistral(), &Qwen2(), &Qwen3(), &Qwen3Moe(), &DeepseekV3(),
  };
  return kFamilies;
}

absl::StatusOr<const DecoderFamily*> ForwardOf(const ModelConfig& config) {
  const auto* family = dynamic_cast<const DecoderFamily*>(config.family);
  if (family == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_type '", config.model_type,
                     "' has no forward implementation; supported: ",
                     ModelTypeList(Families())));
  }
  return family;
}

}  // namespace care::engine
