// Between an exported layer (MlaLayer, mla_tensors.h) and healing's
// parameters (heal_layer.h): the written attention tensors in the unscaled
// linear latent as healing's start, and the tensors of a healed layer
// (kv_a_layernorm's α-trick and kv_b_proj's sqrt(eps) applied here, as in
// BuildAttentionTensors).
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_TENSORS_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_TENSORS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

// The layer's parameters as written (q folds, NoPE correction and q scale
// included; kv_b per query head). Arguments as BuildAttentionTensors.
absl::StatusOr<HealParams<float>> HealStart(int64_t layer, const MlaLayer& mla,
                                            const Tensor& q_proj,
                                            const LayerWeights& weights,
                                            int64_t num_heads);

// q_proj, kv_a_proj_with_mqa, kv_a_layernorm and kv_b_proj of a healed
// layer with latent scale α = 2^-alpha_log2.
AttentionTensors HealedTensors(int64_t layer, const HealParams<float>& p,
                               int64_t num_heads, int alpha_log2);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_TENSORS_H_
