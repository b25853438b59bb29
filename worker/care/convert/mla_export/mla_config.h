// config.json of a DeepSeek-V3 export (docs/checkpoint-format.md
// "DeepSeek-V3 layout"). Every DeepseekV3Config key is written explicitly:
// a missing key would take DeepSeek-V3's own default in transformers
// (q_lora_rank 1536, 128 KV heads, MoE from layer 3). All layers dense
// (first_k_dense_replace = num_hidden_layers), num_key_value_heads =
// num_attention_heads, no head_dim key, rope_interleave true (the q_pe/k_pe
// rows are written interleaved), tied embeddings kept, and a "care" block
// with the provenance (layout "deepseek_v3").
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_CONFIG_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_CONFIG_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/io/model_config.h"

namespace care::convert::mla {

struct ExportMetadata {
  std::string method;  // care, pca, svd, ...
  std::string budget;  // "kv_save=0.5" / "kv_lora_rank=32"
  double damping = 0;
};

// The rope_theta of the export: output pair i must rotate at source
// frequency i, i.e. theta_out^(-2i/R) = theta^(-2i/d_h).
double ExportRopeTheta(const ModelConfig& source, int64_t rope_dim);

// InvalidArgument when the source's RoPE cannot be carried: a partial
// rotary factor other than 1, or yarn scaling (its attention factor would
// have to be split between the RoPE and NoPE parts; not supported yet).
absl::Status CheckExportableRope(const ModelConfig& source);

// `layers` all have the same rope_dim and kv_lora_rank.
absl::StatusOr<nlohmann::json> ExportConfigJson(
    const ModelConfig& source, const std::vector<MlaLayer>& layers,
    const ExportMetadata& meta);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_CONFIG_H_
