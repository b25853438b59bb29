// The parts of a Hugging Face config.json that the pipeline needs, for the
// supported families: llama, mistral, qwen2, qwen3, qwen3_moe, deepseek_v3.
// Parsing and validation live in model_config.cc.
#ifndef CARE_IO_MODEL_CONFIG_H_
#define CARE_IO_MODEL_CONFIG_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/deepseek_v3_config.h"

namespace care {

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

struct ModelConfig {
  std::string model_type;  // "llama", "mistral", "qwen2", "qwen3", "qwen3_moe"
  std::string architecture;  // architectures[0], e.g. "LlamaForCausalLM"

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
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3*)

  // qwen3_moe
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // as written, e.g. "bfloat16"

  // deepseek_v3 (multi-head latent attention; deepseek_v3_config.h).
  std::optional<DeepseekV3Config> deepseek_v3;

  // Present when the checkpoint is a CARE latent-attention output.
  std::optional<LatentAttentionConfig> latent;

  // The whole parsed config.json, so writers can keep every source field.
  nlohmann::json raw;

  // g * d_h: width of K (and of V) per token per layer.
  int64_t kv_width() const { return num_key_value_heads * head_dim; }
  // True when layer `l` uses the sparse MoE block instead of the dense MLP.
  bool IsMoeLayer(int64_t layer) const;
};

// Values a KV cache holds per token over all layers: 2·g·d_h per layer (K
// and V); Σ (rank_k + rank_v) for a CARE latent checkpoint;
// (kv_lora_rank + qk_rope_head_dim) per layer for deepseek_v3 (c_kv and the
// shared k_pe).
int64_t KvValuesPerToken(const ModelConfig& config);

// The model_type values accepted by ParseModelConfig.
const std::vector<std::string>& SupportedModelTypes();

// Parses config.json text. `origin` (a path) prefixes error messages, which
// name the offending field; an unsupported model_type lists the supported.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view origin);

// Reads and parses <dir>/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace care

#endif  // CARE_IO_MODEL_CONFIG_H_
