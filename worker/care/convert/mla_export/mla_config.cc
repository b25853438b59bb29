#include "care/convert/mla_export/mla_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace care::convert::mla {

double ExportRopeTheta(const ModelConfig& source, int64_t rope_dim) {
  if (rope_dim == source.head_dim) return source.rope_theta;
  return std::pow(source.rope_theta, static_cast<double>(rope_dim) /
                                         static_cast<double>(source.head_dim));
}

absl::Status CheckExportableRope(const ModelConfig& source) {
  if (source.partial_rotary_factor != 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deepseek-v3 layout: partial_rotary_factor ",
        source.partial_rotary_factor,
        " is not supported (the export needs RoPE on the whole head)"));
  }
  if (source.rope_scaling.type == RopeScalingType::kYarn) {
    return absl::InvalidArgumentError(
        "deepseek-v3 layout: rope_scaling type 'yarn' is not supported yet "
        "(its attention factor applies to the whole source score but only to "
        "the RoPE part in DeepSeek-V3)");
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ExportConfigJson(
    const ModelConfig& source, const std::vector<MlaLayer>& layers,
    const ExportMetadata& meta) {
  if (layers.empty() ||
      static_cast<int64_t>(layers.size()) != source.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("deepseek-v3 config: ", layers.size(), " layers for a ",
                     source.num_hidden_layers, "-layer model"));
  }
  const int64_t rope = layers[0].rope.shape.rope_dim;
  const int64_t rank = layers[0].kv_lora_rank();
  const int64_t freqfold = layers[0].rope.shape.freqfold;
  std::vector<int> alpha_log2;
  for (const MlaLayer& l : layers) {
    if (l.rope.shape.rope_dim != rope || l.kv_lora_rank() != rank ||
        l.bias_channel != layers[0].bias_channel) {
      return absl::InvalidArgumentError(
          "deepseek-v3 config: every layer needs the same rope_dim, "
          "kv_lora_rank and biases (the format has one of each)");
    }
    alpha_log2.push_back(l.alpha_log2);
  }
  const nlohmann::json& raw = source.raw;
  auto raw_or = [&](const char* key, nlohmann::json fallback) {
    return raw.is_object() && raw.contains(key) ? raw[key] : fallback;
  };
  const int64_t n_h = source.num_attention_heads;
  nlohmann::json j = nlohmann::json::object();
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j["model_type"] = "deepseek_v3";
  j["vocab_size"] = source.vocab_size;
  j["hidden_size"] = source.hidden_size;
  j["intermediate_size"] = source.intermediate_size;
  j["num_hidden_layers"] = source.num_hidden_layers;
  j["num_attention_heads"] = n_h;
  j["num_key_value_heads"] = n_h;
  // All layers dense: the MoE keys are never used, but written with valid
  // values (2 routed experts in 1 group, the smallest group-routing
  // accepts; no shared expert) instead of DeepSeek-V3's.
  j["first_k_dense_replace"] = source.num_hidden_layers;
  j["moe_intermediate_size"] = source.intermediate_size;
  j["n_shared_experts"] = 0;
  j["n_routed_experts"] = 2;
  j["num_experts_per_tok"] = 1;
  j["n_group"] = 1;
  j["topk_group"] = 1;
  j["norm_topk_prob"] = true;
  j["routed_scaling_factor"] = 1.0;
  j["moe_layer_freq"] = 1;
  // q biases (Qwen2) need the q_lora path: rank D + 1 (mla_bias.h).
  const bool bias = layers[0].bias_channel;
  j["q_lora_rank"] =
      bias ? nlohmann::json(source.hidden_size + 1) : nlohmann::json(nullptr);
  j["kv_lora_rank"] = rank;
  j["qk_rope_head_dim"] = rope;
  j["qk_nope_head_dim"] = source.head_dim;
  j["v_head_dim"] = source.head_dim;
  j["hidden_act"] = raw_or("hidden_act", "silu");
  j["max_position_embeddings"] = source.max_position_embeddings;
  j["initializer_range"] = raw_or("initializer_range", 0.02);
  j["rms_norm_eps"] = source.rms_norm_eps;
  j["use_cache"] = true;
  j["pad_token_id"] = raw_or("pad_token_id", nullptr);
  j["bos_token_id"] = raw_or("bos_token_id", nullptr);
  j["eos_token_id"] = raw_or("eos_token_id", nullptr);
  j["pretraining_tp"] = 1;
  j["tie_word_embeddings"] = source.tie_word_embeddings;
  j["rope_theta"] = ExportRopeTheta(source, rope);
  // linear and llama3 act per frequency (by wavelength): the same object
  // maps the kept frequencies exactly.
  j["rope_scaling"] = raw_or("rope_scaling", nullptr);
  j["rope_interleave"] = true;
  j["attention_bias"] = bias;
  j["attention_dropout"] = 0.0;
  j["torch_dtype"] = raw_or("torch_dtype", "float32");
  j["care"] = {{"format_version", 1},
               {"layout", "deepseek_v3"},
               {"source_architecture", source.architecture},
               {"source_model_type", source.model_type},
               {"method", meta.method},
               {"budget", meta.budget},
               {"damping", meta.damping},
               {"rope_dim", rope},
               {"freqfold", freqfold},
               {"kv_lora_rank", rank},
               {"source_rope_theta", source.rope_theta},
               {"q_scale", layers[0].q_scale},
               {"latent_norm_alpha_log2", alpha_log2},
               {"bias_channel", bias}};
  return j;
}

}  // namespace care::convert::mla
