// The config fields only DeepSeek-V3 (multi-head latent attention) has, as
// the deepseek_v3 family (engine/families/deepseek_v3.cc) parses them from
// config.json with transformers' defaults for absent keys
// (docs/checkpoint-io.md). Reach them with
// config.fields<DeepseekV3Config>() (null for other families).
#ifndef CARE_IO_DEEPSEEK_V3_CONFIG_H_
#define CARE_IO_DEEPSEEK_V3_CONFIG_H_

#include <cstdint>
#include <optional>

#include "care/io/model_config.h"

namespace care {

struct DeepseekV3Config : FamilyFields {
  std::optional<int64_t> q_lora_rank;  // null in config.json: q_proj
  int64_t kv_lora_rank = 512;          // r, width of the latent c_kv
  int64_t qk_nope_head_dim = 128;
  int64_t qk_rope_head_dim = 64;  // d_r, width of the shared k_pe
  int64_t v_head_dim = 128;
  bool rope_interleave = true;  // q_pe / k_pe rows stored pairwise
  int64_t n_routed_experts = 256;
  int64_t n_shared_experts = 1;
  int64_t num_experts_per_tok = 8;
  int64_t moe_intermediate_size = 2048;
  int64_t n_group = 8;
  int64_t topk_group = 4;
  int64_t first_k_dense_replace = 3;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 2.5;
  // qk_head_dim^-0.5, times yarn_get_mscale(factor, mscale_all_dim)² when
  // rope scaling is on and mscale_all_dim is set.
  double softmax_scale = 0;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values cached per token per layer: c_kv and k_pe.
  int64_t kv_cache_width() const { return kv_lora_rank + qk_rope_head_dim; }
};

}  // namespace care

#endif  // CARE_IO_DEEPSEEK_V3_CONFIG_H_
