// The parts of a Hugging Face config.json that the pipeline needs. The
// fields every family shares are parsed in model_config.cc; each family
// (model_family.h, one file per family under engine/families/) reads its
// own and sets its defaults.
#ifndef CARE_IO_MODEL_CONFIG_H_
#define CARE_IO_MODEL_CONFIG_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace care {

class ModelFamily;
// model_family.h: a list of the families the caller knows.
using ModelFamilies = absl::Span<const ModelFamily* const>;

enum class RopeScalingType { kNone, kLinear, kLlama3, kYarn };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn
  int64_t original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  std::optional<double> attention_factor;  // yarn mscale override
  // yarn, DeepSeek style: without attention_factor, both set and nonzero,
  // cos/sin are scaled by mscale(factor, mscale) / mscale(factor,
  // mscale_all_dim) instead of mscale(factor, 1).
  double mscale = 0;
  double mscale_all_dim = 0;
  bool truncate = true;  // yarn: floor/ceil the correction range
};

// Per-layer latent ranks of a CARE-converted checkpoint
// (docs/checkpoint-format.md).
struct LatentAttentionConfig {
  std::vector<int> rank_k;  // [num_hidden_layers]
  std::vector<int> rank_v;  // [num_hidden_layers]
};

// Config fields only one family has (e.g. MLA ranks): the family's own
// struct, derived from this, set by its ParseFields.
struct FamilyFields {
  virtual ~FamilyFields() = default;
};

struct ModelConfig {
  std::string model_type;    // config.json's, e.g. "llama", "qwen3_moe"
  std::string architecture;  // architectures[0], e.g. "LlamaForCausalLM"
  // The family of model_type (never null in a parsed config); the engine
  // runs its layer forward, the converter asks it what it supports.
  const ModelFamily* family = nullptr;

  int64_t hidden_size = 0;          // D
  int64_t intermediate_size = 0;    // dense MLP width
  int64_t num_hidden_layers = 0;    // L
  int64_t num_attention_heads = 0;  // n_h
  int64_t num_key_value_heads = 0;  // g
  int64_t head_dim = 0;             // d_h (explicit or D / n_h)
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double partial_rotary_factor = 1.0;  // fraction of d_h rotated
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (qwen2; llama attention_bias)
  bool o_proj_bias = false;     // o_proj.bias (transformers: not qwen2's)
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3*)
  // Attention span limit (mistral); the engine refuses longer windows.
  std::optional<int64_t> sliding_window;

  // Sparse MoE (qwen3_moe); which layers use it: IsMoeLayer.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // as written, e.g. "bfloat16"

  // Present when the checkpoint is a CARE latent-attention output.
  std::optional<LatentAttentionConfig> latent;

  // The whole parsed config.json, so writers can keep every source field.
  nlohmann::json raw;

  // The family's own fields (FamilyFields), when it has any.
  std::shared_ptr<const FamilyFields> family_fields;
  template <typename T>
  const T* fields() const {
    return dynamic_cast<const T*>(family_fields.get());
  }

  // g * d_h: width of K (and of V) per token per layer.
  int64_t kv_width() const { return num_key_value_heads * head_dim; }
  // True when layer `l` uses the sparse MoE block instead of the dense MLP
  // (the family decides).
  bool IsMoeLayer(int64_t layer) const;
};

// Values a KV cache holds per token over all layers: 2·g·d_h per layer (K
// and V); Σ (rank_k + rank_v) for a CARE latent checkpoint; what the family
// says otherwise (deepseek_v3: kv_lora_rank + qk_rope_head_dim per layer).
int64_t KvValuesPerToken(const ModelConfig& config);

// Parses config.json text for one of `families` (engine::Families(): all
// the engine runs). `origin` (a path) prefixes error messages, which name
// the offending field; an unknown model_type lists the known ones.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view origin,
                                             ModelFamilies families);

// Reads and parses <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir,
                                            ModelFamilies families);

}  // namespace care

#endif  // CARE_IO_MODEL_CONFIG_H_
