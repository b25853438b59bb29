#include "care/io/model_config.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "care/io/config_reader.h"
#include "care/io/file_util.h"
#include "care/io/model_family.h"

namespace care {
namespace {

using nlohmann::json;

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& j,
                                             int64_t max_positions,
                                             absl::string_view origin) {
  RopeScaling rs;
  if (j.is_null()) return rs;
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": field 'rope_scaling' must be an object or null"));
  }
  ConfigReader r(j, origin, "rope_scaling.");
  // Transformers writes "rope_type"; older configs "type".
  std::string type;
  if (r.Present("rope_type")) {
    CARE_ASSIGN_OR_RETURN(type, r.StringOr("rope_type", ""));
  } else {
    CARE_ASSIGN_OR_RETURN(type, r.StringOr("type", ""));
  }
  if (type.empty() || type == "default") return rs;
  if (type == "linear") {
    rs.type = RopeScalingType::kLinear;
    CARE_ASSIGN_OR_RETURN(rs.factor, r.Double("factor"));
  } else if (type == "llama3") {
    rs.type = RopeScalingType::kLlama3;
    CARE_ASSIGN_OR_RETURN(rs.factor, r.Double("factor"));
    CARE_ASSIGN_OR_RETURN(rs.low_freq_factor, r.Double("low_freq_factor"));
    CARE_ASSIGN_OR_RETURN(rs.high_freq_factor, r.Double("high_freq_factor"));
    CARE_ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                          r.PositiveInt("original_max_position_embeddings"));
    if (rs.low_freq_factor <= 0 || rs.high_freq_factor <= rs.low_freq_factor) {
      return r.Error(
          "high_freq_factor",
          absl::StrCat("must exceed low_freq_factor (> 0); got low ",
                       rs.low_freq_factor, ", high ", rs.high_freq_factor));
    }
  } else if (type == "yarn") {
    rs.type = RopeScalingType::kYarn;
    CARE_ASSIGN_OR_RETURN(rs.factor, r.Double("factor"));
    // Transformers falls back to max_position_embeddings.
    CARE_ASSIGN_OR_RETURN(
        rs.original_max_position_embeddings,
        r.IntOr("original_max_position_embeddings", max_positions));
    if (rs.original_max_position_embeddings <= 0) {
      return r.Error("original_max_position_embeddings",
                     "must be > 0 (or max_position_embeddings must be set)");
    }
    CARE_ASSIGN_OR_RETURN(rs.beta_fast, r.DoubleOr("beta_fast", 32.0));
    CARE_ASSIGN_OR_RETURN(rs.beta_slow, r.DoubleOr("beta_slow", 1.0));
    if (r.Present("attention_factor")) {
      CARE_ASSIGN_OR_RETURN(double af, r.Double("attention_factor"));
      rs.attention_factor = af;
    }
    CARE_ASSIGN_OR_RETURN(rs.mscale, r.DoubleOr("mscale", 0.0));
    CARE_ASSIGN_OR_RETURN(rs.mscale_all_dim, r.DoubleOr("mscale_all_dim", 0.0));
    CARE_ASSIGN_OR_RETURN(rs.truncate, r.BoolOr("truncate", true));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": rope_scaling type '", type,
        "' is not supported (supported: default, linear, llama3, yarn)"));
  }
  if (rs.factor <= 0) {
    return r.Error("factor", absl::StrCat("must be > 0, got ", rs.factor));
  }
  return rs;
}

absl::Status ParseLatent(const json& care, ModelConfig& c,
                         absl::string_view origin) {
  if (!care.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": field 'care' must be an object"));
  }
  ConfigReader r(care, origin, "care.");
  LatentAttentionConfig latent;
  for (const char* key : {"rank_k", "rank_v"}) {
    if (!r.Present(key)) return r.Error(key, "is missing");
    CARE_ASSIGN_OR_RETURN(std::vector<int64_t> ranks, r.IntList(key));
    if (static_cast<int64_t>(ranks.size()) != c.num_hidden_layers) {
      return r.Error(key, absl::StrCat("has ", ranks.size(),
                                       " entries; num_hidden_layers is ",
                                       c.num_hidden_layers));
    }
    std::vector<int>& out =
        std::string(key) == "rank_k" ? latent.rank_k : latent.rank_v;
    for (size_t l = 0; l < ranks.size(); ++l) {
      if (ranks[l] < 1 || ranks[l] > c.kv_width()) {
        return r.Error(key, absl::StrCat("layer ", l, ": rank ", ranks[l],
                                         " outside [1, ", c.kv_width(),
                                         "] (num_key_value_heads * head_dim)"));
      }
      out.push_back(static_cast<int>(ranks[l]));
    }
  }
  c.latent = std::move(latent);
  return absl::OkStatus();
}

}  // namespace

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  return family != nullptr && family->IsMoeLayer(*this, layer);
}

int64_t KvValuesPerToken(const ModelConfig& c) {
  if (c.latent) {
    int64_t total = 0;
    for (size_t l = 0; l < c.latent->rank_k.size(); ++l) {
      total += c.latent->rank_k[l] + c.latent->rank_v[l];
    }
    return total;
  }
  if (c.family != nullptr) {
    if (std::optional<int64_t> w = c.family->KvCacheWidth(c)) {
      return *w * c.num_hidden_layers;
    }
  }
  return 2 * c.kv_width() * c.num_hidden_layers;
}

const ModelFamily* FindModelFamily(ModelFamilies families,
                                   absl::string_view model_type) {
  for (const ModelFamily* f : families) {
    if (f->model_type() == model_type) return f;
  }
  return nullptr;
}

std::string ModelTypeList(ModelFamilies families) {
  return absl::StrJoin(families, ", ",
                       [](std::string* out, const ModelFamily* f) {
                         absl::StrAppend(out, f->model_type());
                       });
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view origin,
                                             ModelFamilies families) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": not a valid JSON object"));
  }
  ConfigReader r(j, origin);
  ModelConfig c;
  CARE_ASSIGN_OR_RETURN(c.model_type, r.StringOr("model_type", ""));
  c.family = FindModelFamily(families, c.model_type);
  if (c.family == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": model_type '", c.model_type,
        "' is not supported (supported: ", ModelTypeList(families), ")"));
  }
  // Fields are read from the family's view of the file (its defaults for
  // absent keys filled in); raw keeps the file as written.
  json as_written = j;
  c.family->PrepareConfig(j);
  if (r.Present("architectures")) {
    const json& a = r.Get("architectures");
    if (!a.is_array() || (!a.empty() && !a[0].is_string())) {
      return r.Error("architectures", "must be a list of strings");
    }
    if (!a.empty()) c.architecture = a[0].get<std::string>();
  }
  CARE_ASSIGN_OR_RETURN(std::string act, r.StringOr("hidden_act", "silu"));
  if (act != "silu") {
    return r.Error("hidden_act",
                   absl::StrCat("is '", act, "'; only 'silu' is supported"));
  }
  CARE_ASSIGN_OR_RETURN(bool mlp_bias, r.BoolOr("mlp_bias", false));
  if (mlp_bias) return r.Error("mlp_bias", "true is not supported");

  CARE_ASSIGN_OR_RETURN(c.hidden_size, r.PositiveInt("hidden_size"));
  CARE_ASSIGN_OR_RETURN(c.intermediate_size,
                        r.PositiveInt("intermediate_size"));
  CARE_ASSIGN_OR_RETURN(c.num_hidden_layers,
                        r.PositiveInt("num_hidden_layers"));
  CARE_ASSIGN_OR_RETURN(c.num_attention_heads,
                        r.PositiveInt("num_attention_heads"));
  CARE_ASSIGN_OR_RETURN(c.vocab_size, r.PositiveInt("vocab_size"));
  c.num_key_value_heads = c.num_attention_heads;
  if (r.Present("num_key_value_heads")) {
    CARE_ASSIGN_OR_RETURN(c.num_key_value_heads,
                          r.PositiveInt("num_key_value_heads"));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return r.Error("num_key_value_heads",
                   absl::StrCat("(", c.num_key_value_heads,
                                ") must divide num_attention_heads (",
                                c.num_attention_heads, ")"));
  }
  if (r.Present("head_dim")) {
    CARE_ASSIGN_OR_RETURN(c.head_dim, r.PositiveInt("head_dim"));
  } else if (std::optional<int64_t> d = c.family->default_head_dim()) {
    c.head_dim = *d;
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return r.Error(
          "hidden_size",
          absl::StrCat("(", c.hidden_size,
                       ") is not divisible by num_attention_heads (",
                       c.num_attention_heads, ") and head_dim is not given"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) {
    return r.Error("head_dim",
                   absl::StrCat("must be even for RoPE, got ", c.head_dim));
  }
  CARE_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        r.IntOr("max_position_embeddings", 0));
  if (c.max_position_embeddings < 0) {
    return r.Error("max_position_embeddings", "must be >= 0");
  }
  CARE_ASSIGN_OR_RETURN(c.rms_norm_eps, r.DoubleOr("rms_norm_eps", 1e-6));
  if (c.rms_norm_eps <= 0) return r.Error("rms_norm_eps", "must be > 0");
  CARE_ASSIGN_OR_RETURN(c.rope_theta, r.DoubleOr("rope_theta", 10000.0));
  if (c.rope_theta <= 0) return r.Error("rope_theta", "must be > 0");
  CARE_ASSIGN_OR_RETURN(c.partial_rotary_factor,
                        r.DoubleOr("partial_rotary_factor", 1.0));
  if (c.partial_rotary_factor <= 0 || c.partial_rotary_factor > 1) {
    return r.Error("partial_rotary_factor", "must be in (0, 1]");
  }
  if (j.contains("rope_scaling")) {
    CARE_ASSIGN_OR_RETURN(
        c.rope_scaling,
        ParseRopeScaling(j["rope_scaling"], c.max_position_embeddings, origin));
  }
  CARE_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                        r.BoolOr("tie_word_embeddings", false));
  CARE_RETURN_IF_ERROR(c.family->ParseFields(r, c));

  if (r.Present("bos_token_id")) {
    CARE_ASSIGN_OR_RETURN(int64_t bos, r.Int("bos_token_id"));
    c.bos_token_id = bos;
  }
  CARE_ASSIGN_OR_RETURN(c.eos_token_ids, r.IntList("eos_token_id"));
  // Newer transformers write "dtype" instead of "torch_dtype".
  CARE_ASSIGN_OR_RETURN(c.torch_dtype, r.StringOr("torch_dtype", ""));
  if (c.torch_dtype.empty()) {
    CARE_ASSIGN_OR_RETURN(c.torch_dtype, r.StringOr("dtype", ""));
  }
  // A "care" block is provenance; only the latent layout (no "layout" key,
  // or "latent") defines latent attention. A DeepSeek-V3 export's block
  // ("layout": "deepseek_v3") describes a stock checkpoint.
  const bool exported = j.contains("care") && j["care"].is_object() &&
                        j["care"].contains("layout") &&
                        j["care"]["layout"] != "latent";
  if (r.Present("care") && !exported) {
    CARE_RETURN_IF_ERROR(ParseLatent(j["care"], c, origin));
  }
  c.raw = std::move(as_written);
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir,
                                            ModelFamilies families) {
  const std::string path = dir + "/config.json";
  CARE_ASSIGN_OR_RETURN(const std::string text, io::ReadFileToString(path));
  return ParseModelConfig(text, path, families);
}

}  // namespace care
