// DeepSeek-V3 (multi-head latent attention) config.json fields, read the way
// transformers' DeepseekV3Config reads them: absent keys take its defaults
// (q_lora_rank 1536, kv_lora_rank 512, ...; docs/checkpoint-io.md), and
// configs transformers itself cannot run are refused with the reason.
// ParseModelConfig calls these for model_type "deepseek_v3"; the tensor
// names and shapes of the family live here too.
#ifndef CARE_IO_DEEPSEEK_V3_CONFIG_H_
#define CARE_IO_DEEPSEEK_V3_CONFIG_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace care {

struct ModelConfig;

struct DeepseekV3Config {
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

// Adds transformers' DeepseekV3Config defaults for the generic keys absent
// from `j` (vocab_size 129280, hidden_size 7168, ..., num_key_value_heads
// 128), and maps transformers 5's rope_parameters to rope_scaling /
// rope_theta, so that the generic parser reads what transformers would.
void FillDeepseekV3Defaults(nlohmann::json* j);

// Reads the DeepSeek-V3 fields of `j` into c->deepseek_v3 and sets the
// generic ones they imply (head_dim = qk_rope_head_dim, the MoE sizes).
// Errors name `origin` and the field.
absl::Status ParseDeepseekV3Fields(const nlohmann::json& j,
                                   absl::string_view origin, ModelConfig* c);

struct DeepseekV3Tensor {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor a deepseek_v3 checkpoint must hold, in model order.
std::vector<DeepseekV3Tensor> DeepseekV3Tensors(const ModelConfig& c);

}  // namespace care

#endif  // CARE_IO_DEEPSEEK_V3_CONFIG_H_
