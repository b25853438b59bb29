// Hugging Face tensor names of the decoder families the engine runs, and of
// the CARE latent attention (k_a_proj/k_b_proj, v_a_proj/v_b_proj).
#ifndef CARE_ENGINE_WEIGHT_NAMES_H_
#define CARE_ENGINE_WEIGHT_NAMES_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace care::engine {

inline constexpr absl::string_view kEmbedTokens = "model.embed_tokens.weight";
inline constexpr absl::string_view kFinalNorm = "model.norm.weight";
inline constexpr absl::string_view kLmHead = "lm_head.weight";

// "model.layers.<layer>.<suffix>", e.g. LayerTensor(3,
// "self_attn.q_proj.weight").
inline std::string LayerTensor(int64_t layer, absl::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

// "model.layers.<layer>.mlp.experts.<expert>.<suffix>".
inline std::string ExpertTensor(int64_t layer, int64_t expert,
                                absl::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".mlp.experts.", expert, ".",
                      suffix);
}

}  // namespace care::engine

#endif  // CARE_ENGINE_WEIGHT_NAMES_H_
