#include "care/io/deepseek_v3_config.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "care/io/model_config.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care {

namespace {

using nlohmann::json;

absl::Status FieldError(absl::string_view origin, absl::string_view key,
                        absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": field '", key, "' ", what));
}

// An integer field (absent: `*out` keeps its default).
absl::Status ReadInt(const json& j, absl::string_view origin, const char* key,
                     int64_t min, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  if (!it->is_number_integer()) {
    return FieldError(origin, key,
                      absl::StrCat("must be an integer, got ", it->dump()));
  }
  const int64_t v = it->get<int64_t>();
  if (v < min) {
    return FieldError(origin, key,
                      absl::StrCat("must be >= ", min, ", got ", v));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ReadBool(const json& j, absl::string_view origin, const char* key,
                      bool* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return FieldError(origin, key,
                      absl::StrCat("must be true or false, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

double Num(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

double YarnGetMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// transformers' DeepseekV3Attention.scaling.
double SoftmaxScale(const json& j, int64_t qk_head_dim) {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim));
  auto rs = j.find("rope_scaling");
  if (rs == j.end() || !rs->is_object()) return scale;
  std::string type = "default";
  for (const char* key : {"type", "rope_type"}) {  // rope_type wins
    if (rs->contains(key) && (*rs)[key].is_string()) {
      type = (*rs)[key].get<std::string>();
    }
  }
  if (type == "default") return scale;
  const double all_dim = Num(*rs, "mscale_all_dim", 0.0);
  if (all_dim != 0) {
    const double m = YarnGetMscale(Num(*rs, "factor", 1.0), all_dim);
    scale *= m * m;
  }
  return scale;
}

}  // namespace

void FillDeepseekV3Defaults(json* j) {
  // DeepseekV3Config.__init__ defaults. A null num_key_value_heads means
  // num_attention_heads (the generic parser's rule); an absent one is 128.
  const std::pair<const char*, json> defaults[] = {
      {"vocab_size", 129280},
      {"hidden_size", 7168},
      {"intermediate_size", 18432},
      {"num_hidden_layers", 61},
      {"num_attention_heads", 128},
      {"num_key_value_heads", 128},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-6},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"bos_token_id", 0},
      {"eos_token_id", 1},
  };
  // transformers 5 writes rope_parameters (with rope_theta inside).
  if (!j->contains("rope_scaling") && j->contains("rope_parameters") &&
      (*j)["rope_parameters"].is_object()) {
    const json rp = (*j)["rope_parameters"];
    if (!j->contains("rope_theta") && rp.contains("rope_theta")) {
      (*j)["rope_theta"] = rp["rope_theta"];
    }
    (*j)["rope_scaling"] = rp;
  }
  for (const auto& [key, value] : defaults) {
    if (!j->contains(key)) (*j)[key] = value;
  }
}

absl::Status ParseDeepseekV3Fields(const json& j, absl::string_view origin,
                                   ModelConfig* c) {
  DeepseekV3Config d;
  d.q_lora_rank = 1536;
  if (auto it = j.find("q_lora_rank"); it != j.end()) {
    if (it->is_null()) {
      d.q_lora_rank.reset();
    } else if (it->is_number_integer() && it->get<int64_t>() > 0) {
      d.q_lora_rank = it->get<int64_t>();
    } else {
      return FieldError(
          origin, "q_lora_rank",
          absl::StrCat("must be a positive integer or null, got ", it->dump()));
    }
  }
  CARE_RETURN_IF_ERROR(ReadInt(j, origin, "kv_lora_rank", 1, &d.kv_lora_rank));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "qk_nope_head_dim", 1, &d.qk_nope_head_dim));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "qk_rope_head_dim", 2, &d.qk_rope_head_dim));
  CARE_RETURN_IF_ERROR(ReadInt(j, origin, "v_head_dim", 1, &d.v_head_dim));
  CARE_RETURN_IF_ERROR(
      ReadBool(j, origin, "rope_interleave", &d.rope_interleave));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "n_routed_experts", 1, &d.n_routed_experts));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "n_shared_experts", 0, &d.n_shared_experts));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "num_experts_per_tok", 1, &d.num_experts_per_tok));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "moe_intermediate_size", 1, &d.moe_intermediate_size));
  CARE_RETURN_IF_ERROR(ReadInt(j, origin, "n_group", 1, &d.n_group));
  CARE_RETURN_IF_ERROR(ReadInt(j, origin, "topk_group", 1, &d.topk_group));
  CARE_RETURN_IF_ERROR(
      ReadInt(j, origin, "first_k_dense_replace", 0, &d.first_k_dense_replace));
  CARE_RETURN_IF_ERROR(
      ReadBool(j, origin, "norm_topk_prob", &d.norm_topk_prob));
  if (auto it = j.find("routed_scaling_factor"); it != j.end()) {
    if (!it->is_number() || !std::isfinite(it->get<double>())) {
      return FieldError(origin, "routed_scaling_factor",
                        absl::StrCat("must be a number, got ", it->dump()));
    }
    d.routed_scaling_factor = it->get<double>();
  }
  if (d.qk_rope_head_dim % 2 != 0) {
    return FieldError(
        origin, "qk_rope_head_dim",
        absl::StrCat("must be even for RoPE, got ", d.qk_rope_head_dim));
  }
  // What transformers' DeepseekV3 cannot run. Its config sets head_dim =
  // qk_rope_head_dim, but a head_dim key overrides that and the rotary table
  // (built from head_dim) no longer fits q_pe / k_pe.
  if (auto it = j.find("head_dim"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != d.qk_rope_head_dim) {
      return FieldError(
          origin, "head_dim",
          absl::StrCat(it->dump(), " differs from qk_rope_head_dim (",
                       d.qk_rope_head_dim,
                       "): transformers builds the DeepSeek-V3 rotary table "
                       "from head_dim, which must then be the RoPE width; "
                       "drop the key or set it to qk_rope_head_dim"));
    }
  }
  // kv_b_proj makes one K/V head per query head; transformers would repeat
  // them num_attention_heads / num_key_value_heads times.
  if (c->num_key_value_heads != c->num_attention_heads) {
    return FieldError(
        origin, "num_key_value_heads",
        absl::StrCat("(", c->num_key_value_heads,
                     ") must equal num_attention_heads (",
                     c->num_attention_heads,
                     ") for deepseek_v3: kv_b_proj yields one key/value per "
                     "query head (an absent key means 128 in transformers)"));
  }
  const int64_t per_group = d.n_routed_experts / d.n_group;
  if (d.n_routed_experts % d.n_group != 0 || per_group < 2) {
    return FieldError(
        origin, "n_group",
        absl::StrCat("(", d.n_group, ") must divide n_routed_experts (",
                     d.n_routed_experts,
                     ") into groups of at least 2 (a group is scored by its "
                     "two best experts)"));
  }
  if (d.topk_group > d.n_group) {
    return FieldError(
        origin, "topk_group",
        absl::StrCat("(", d.topk_group, ") exceeds n_group (", d.n_group, ")"));
  }
  if (d.num_experts_per_tok > d.n_routed_experts) {
    return FieldError(
        origin, "num_experts_per_tok",
        absl::StrCat("(", d.num_experts_per_tok, ") exceeds n_routed_experts (",
                     d.n_routed_experts, ")"));
  }
  // DeepSeek-V3's published weights are FP8 blocks with scale tensors.
  if (auto it = j.find("quantization_config");
      it != j.end() && !it->is_null()) {
    return FieldError(
        origin, "quantization_config",
        absl::StrCat(it->is_object() && it->contains("quant_method")
                         ? (*it)["quant_method"].dump()
                         : it->dump(),
                     ": quantized checkpoints are not supported; use a "
                     "BF16/F16/F32 copy"));
  }
  d.softmax_scale = SoftmaxScale(j, d.qk_head_dim());
  c->head_dim = d.qk_rope_head_dim;  // the rotary width, as transformers
  c->partial_rotary_factor = 1.0;
  c->qk_norm = false;
  c->num_experts = d.n_routed_experts;
  c->num_experts_per_tok = d.num_experts_per_tok;
  c->moe_intermediate_size = d.moe_intermediate_size;
  c->norm_topk_prob = d.norm_topk_prob;
  c->deepseek_v3 = std::move(d);
  return absl::OkStatus();
}

std::vector<DeepseekV3Tensor> DeepseekV3Tensors(const ModelConfig& c) {
  namespace n = io::names;
  const DeepseekV3Config& d = *c.deepseek_v3;
  const int64_t D = c.hidden_size, nh = c.num_attention_heads;
  const int64_t qk = d.qk_head_dim(), r = d.kv_lora_rank;
  std::vector<DeepseekV3Tensor> out;
  out.push_back({n::Embed(), {c.vocab_size, D}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto attn = [l](const char* s) {
      return n::Layer(l, absl::StrCat("self_attn.", s));
    };
    out.push_back({n::InputNorm(l), {D}});
    if (d.q_lora_rank) {
      const int64_t rq = *d.q_lora_rank;
      out.push_back({attn("q_a_proj.weight"), {rq, D}});
      if (c.attention_bias) out.push_back({attn("q_a_proj.bias"), {rq}});
      out.push_back({attn("q_a_layernorm.weight"), {rq}});
      out.push_back({attn("q_b_proj.weight"), {nh * qk, rq}});
    } else {
      out.push_back({n::QProj(l), {nh * qk, D}});
    }
    out.push_back(
        {attn("kv_a_proj_with_mqa.weight"), {r + d.qk_rope_head_dim, D}});
    if (c.attention_bias) {
      out.push_back(
          {attn("kv_a_proj_with_mqa.bias"), {r + d.qk_rope_head_dim}});
    }
    out.push_back({attn("kv_a_layernorm.weight"), {r}});
    out.push_back({attn("kv_b_proj.weight"),
                   {nh * (d.qk_nope_head_dim + d.v_head_dim), r}});
    out.push_back({n::OProj(l), {D, nh * d.v_head_dim}});
    if (c.attention_bias) out.push_back({attn("o_proj.bias"), {D}});
    out.push_back({n::PostAttentionNorm(l), {D}});
    if (c.IsMoeLayer(l)) {
      const int64_t E = d.n_routed_experts, im = d.moe_intermediate_size;
      out.push_back({n::Router(l), {E, D}});
      out.push_back({n::Layer(l, "mlp.gate.e_score_correction_bias"), {E}});
      for (int64_t e = 0; e < E; ++e) {
        out.push_back({n::ExpertGate(l, e), {im, D}});
        out.push_back({n::ExpertUp(l, e), {im, D}});
        out.push_back({n::ExpertDown(l, e), {D, im}});
      }
      if (d.n_shared_experts > 0) {
        const int64_t is = im * d.n_shared_experts;
        const std::string p = n::Layer(l, "mlp.shared_experts.");
        out.push_back({p + "gate_proj.weight", {is, D}});
        out.push_back({p + "up_proj.weight", {is, D}});
        out.push_back({p + "down_proj.weight", {D, is}});
      }
    } else {
      out.push_back({n::GateProj(l), {c.intermediate_size, D}});
      out.push_back({n::UpProj(l), {c.intermediate_size, D}});
      out.push_back({n::DownProj(l), {D, c.intermediate_size}});
    }
  }
  out.push_back({n::FinalNorm(), {D}});
  if (!c.tie_word_embeddings) out.push_back({n::LmHead(), {c.vocab_size, D}});
  return out;
}

}  // namespace care
