// The two halves of a DeepSeek-V3 decoder layer on the compute backend
// (deepseek_v3_layer.cc), for the deepseek_v3 family (deepseek_v3.cc):
// multi-head latent attention and the sigmoid-routed MoE.
#ifndef CARE_ENGINE_FAMILIES_DEEPSEEK_V3_LAYER_H_
#define CARE_ENGINE_FAMILIES_DEEPSEEK_V3_LAYER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "care/compute/backend.h"
#include "care/engine/decoder_family.h"
#include "care/io/deepseek_v3_config.h"

namespace care::engine {

// hidden [tokens, D] += o_proj(MLA(input_layernorm(hidden))), calling the
// on_kv_input hook with the normalized input; a make_kv_projector hook
// that returns a projector is refused (Unimplemented).
absl::Status RunMlaBlock(const LayerContext& ctx, const DeepseekV3Config& d,
                         int64_t layer, compute::Matrix* hidden);

// y [T, D] = routed experts (RouteGroupedTopK weights) + shared experts of
// x [T, D] (the post-attention-normalized states of all tokens).
absl::Status RunDeepseekV3Moe(const LayerContext& ctx,
                              const DeepseekV3Config& d, int64_t layer,
                              const compute::Matrix& x, compute::Matrix* y);

// The 2-D weights loaded ahead for `layer`: o_proj, q_a_proj, the dense MLP
// or the shared experts (the reordered q/kv projections load on use).
std::vector<WeightRequest> DeepseekV3WeightRequests(const ModelConfig& c,
                                                    const DeepseekV3Config& d,
                                                    int64_t layer);

}  // namespace care::engine

#endif  // CARE_ENGINE_FAMILIES_DEEPSEEK_V3_LAYER_H_
