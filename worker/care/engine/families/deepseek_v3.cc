// DeepSeek-V3 (DeepseekV3ForCausalLM), as transformers runs it: multi-head
// latent attention, a dense SwiGLU MLP below first_k_dense_replace, then a
// sigmoid-routed MoE with group-limited top-k and shared experts. This file
// is the family: config.json (transformers' DeepseekV3Config defaults for
// absent keys, and the configs it cannot run refused with the reason), the
// tensors, what the converter says, and the layer wiring; the layer math is
// in deepseek_v3_layer.cc (docs/engine.md, docs/checkpoint-io.md).
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/attention_block.h"
#include "care/engine/decoder_family.h"
#include "care/engine/families/deepseek_v3_layer.h"
#include "care/io/deepseek_v3_config.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

using nlohmann::json;

double Num(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

double YarnGetMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// transformers' DeepseekV3Attention.scaling.
double SoftmaxScale(const json* rope_scaling, int64_t qk_head_dim) {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim));
  if (rope_scaling == nullptr || !rope_scaling->is_object()) return scale;
  const json& rs = *rope_scaling;
  std::string type = "default";
  for (const char* key : {"type", "rope_type"}) {  // rope_type wins
    if (rs.contains(key) && rs[key].is_string()) {
      type = rs[key].get<std::string>();
    }
  }
  if (type == "default") return scale;
  const double all_dim = Num(rs, "mscale_all_dim", 0.0);
  if (all_dim != 0) {
    const double m = YarnGetMscale(Num(rs, "factor", 1.0), all_dim);
    scale *= m * m;
  }
  return scale;
}

// An integer field (present: PrepareConfig filled the defaults) >= min.
absl::Status ReadInt(const ConfigReader& r, const char* key, int64_t min,
                     int64_t* out) {
  CARE_ASSIGN_OR_RETURN(*out, r.Int(key));
  if (*out < min) {
    return r.Error(key, absl::StrCat("must be >= ", min, ", got ", *out));
  }
  return absl::OkStatus();
}

class DeepseekV3Family : public DecoderFamily {
 public:
  absl::string_view model_type() const override { return "deepseek_v3"; }

  // DeepseekV3Config.__init__'s defaults for absent keys; a null
  // num_key_value_heads means num_attention_heads (the common rule), an
  // absent one 128; a null q_lora_rank means q_proj. head_dim is
  // qk_rope_head_dim unless the file says otherwise (refused below).
  void PrepareConfig(json& j) const override {
    // transformers 5 writes rope_parameters (with rope_theta inside).
    if (!j.contains("rope_scaling") && j.contains("rope_parameters") &&
        j["rope_parameters"].is_object()) {
      const json rp = j["rope_parameters"];
      if (!j.contains("rope_theta") && rp.contains("rope_theta")) {
        j["rope_theta"] = rp["rope_theta"];
      }
      j["rope_scaling"] = rp;
    }
    const std::pair<const char*, json> defaults[] = {
        {"vocab_size", 129280},
        {"hidden_size", 7168},
        {"intermediate_size", 18432},
        {"moe_intermediate_size", 2048},
        {"num_hidden_layers", 61},
        {"num_attention_heads", 128},
        {"num_key_value_heads", 128},
        {"n_shared_experts", 1},
        {"n_routed_experts", 256},
        {"routed_scaling_factor", 2.5},
        {"kv_lora_rank", 512},
        {"q_lora_rank", 1536},
        {"qk_rope_head_dim", 64},
        {"v_head_dim", 128},
        {"qk_nope_head_dim", 128},
        {"n_group", 8},
        {"topk_group", 4},
        {"num_experts_per_tok", 8},
        {"first_k_dense_replace", 3},
        {"norm_topk_prob", true},
        {"hidden_act", "silu"},
        {"max_position_embeddings", 4096},
        {"rms_norm_eps", 1e-6},
        {"bos_token_id", 0},
        {"eos_token_id", 1},
        {"tie_word_embeddings", false},
        {"rope_interleave", true},
        {"attention_bias", false},
    };
    for (const auto& [key, value] : defaults) {
      if (!j.contains(key)) j[key] = value;
    }
    // (An odd or malformed qk_rope_head_dim is left for ParseFields to name.)
    const json& rope = j["qk_rope_head_dim"];
    if ((!j.contains("head_dim") || j["head_dim"].is_null()) &&
        rope.is_number_integer() && rope.get<int64_t>() > 0 &&
        rope.get<int64_t>() % 2 == 0) {
      j["head_dim"] = rope;
    }
  }

  absl::Status ParseFields(const ConfigReader& r,
                           ModelConfig& c) const override {
    auto d = std::make_shared<DeepseekV3Config>();
    if (r.Present("q_lora_rank")) {
      CARE_ASSIGN_OR_RETURN(int64_t rq, r.Int("q_lora_rank"));
      if (rq < 1) return r.Error("q_lora_rank", "must be >= 1 or null");
      d->q_lora_rank = rq;
    }
    CARE_RETURN_IF_ERROR(ReadInt(r, "kv_lora_rank", 1, &d->kv_lora_rank));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "qk_nope_head_dim", 1, &d->qk_nope_head_dim));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "qk_rope_head_dim", 2, &d->qk_rope_head_dim));
    CARE_RETURN_IF_ERROR(ReadInt(r, "v_head_dim", 1, &d->v_head_dim));
    CARE_ASSIGN_OR_RETURN(d->rope_interleave,
                          r.BoolOr("rope_interleave", true));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "n_routed_experts", 1, &d->n_routed_experts));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "n_shared_experts", 0, &d->n_shared_experts));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "num_experts_per_tok", 1, &d->num_experts_per_tok));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "moe_intermediate_size", 1, &d->moe_intermediate_size));
    CARE_RETURN_IF_ERROR(ReadInt(r, "n_group", 1, &d->n_group));
    CARE_RETURN_IF_ERROR(ReadInt(r, "topk_group", 1, &d->topk_group));
    CARE_RETURN_IF_ERROR(
        ReadInt(r, "first_k_dense_replace", 0, &d->first_k_dense_replace));
    CARE_ASSIGN_OR_RETURN(d->norm_topk_prob, r.BoolOr("norm_topk_prob", true));
    CARE_ASSIGN_OR_RETURN(d->routed_scaling_factor,
                          r.Double("routed_scaling_factor"));
    CARE_ASSIGN_OR_RETURN(c.attention_bias, r.BoolOr("attention_bias", false));
    if (d->qk_rope_head_dim % 2 != 0) {
      return r.Error(
          "qk_rope_head_dim",
          absl::StrCat("must be even for RoPE, got ", d->qk_rope_head_dim));
    }
    // What transformers cannot run. DeepseekV3Config sets head_dim =
    // qk_rope_head_dim, but a head_dim key overrides it and the rotary table
    // (built from head_dim) then no longer fits q_pe / k_pe.
    if (c.head_dim != d->qk_rope_head_dim) {
      return r.Error(
          "head_dim",
          absl::StrCat("(", c.head_dim, ") differs from qk_rope_head_dim (",
                       d->qk_rope_head_dim,
                       "): transformers builds the DeepSeek-V3 rotary table "
                       "from head_dim, which must then be the RoPE width; "
                       "drop the key or set it to qk_rope_head_dim"));
    }
    // kv_b_proj makes one K/V head per query head; transformers would
    // repeat them num_attention_heads / num_key_value_heads times.
    if (c.num_key_value_heads != c.num_attention_heads) {
      return r.Error(
          "num_key_value_heads",
          absl::StrCat("(", c.num_key_value_heads,
                       ") must equal num_attention_heads (",
                       c.num_attention_heads,
                       ") for deepseek_v3: kv_b_proj yields one key/value per "
                       "query head (an absent key means 128 in transformers)"));
    }
    if (d->n_routed_experts % d->n_group != 0 ||
        d->n_routed_experts / d->n_group < 2) {
      return r.Error(
          "n_group",
          absl::StrCat("(", d->n_group, ") must divide n_routed_experts (",
                       d->n_routed_experts,
                       ") into groups of at least 2 (a group is scored by its "
                       "two best experts)"));
    }
    if (d->topk_group > d->n_group) {
      return r.Error("topk_group",
                     absl::StrCat("(", d->topk_group, ") exceeds n_group (",
                                  d->n_group, ")"));
    }
    if (d->num_experts_per_tok > d->n_routed_experts) {
      return r.Error("num_experts_per_tok",
                     absl::StrCat("(", d->num_experts_per_tok,
                                  ") exceeds n_routed_experts (",
                                  d->n_routed_experts, ")"));
    }
    // DeepSeek-V3's published weights are FP8 blocks with scale tensors.
    if (r.Present("quantization_config")) {
      const json& q = r.Get("quantization_config");
      return r.Error(
          "quantization_config",
          absl::StrCat(q.is_object() && q.contains("quant_method")
                           ? q["quant_method"].dump()
                           : q.dump(),
                       ": quantized checkpoints are not supported; use a "
                       "BF16/F16/F32 copy"));
    }
    d->softmax_scale = SoftmaxScale(
        r.Present("rope_scaling") ? &r.Get("rope_scaling") : nullptr,
        d->qk_head_dim());
    c.partial_rotary_factor = 1.0;  // the rotary width is head_dim = d_r
    c.num_experts = d->n_routed_experts;
    c.num_experts_per_tok = d->num_experts_per_tok;
    c.moe_intermediate_size = d->moe_intermediate_size;
    c.norm_topk_prob = d->norm_topk_prob;
    c.family_fields = std::move(d);
    return absl::OkStatus();
  }

  void AppendLayerTensors(const ModelConfig& c, int64_t l,
                          std::vector<io::ExpectedTensor>& out) const override {
    namespace n = io::names;
    const DeepseekV3Config& d = *c.fields<DeepseekV3Config>();
    const int64_t D = c.hidden_size, nh = c.num_attention_heads;
    const int64_t qk = d.qk_head_dim(), r = d.kv_lora_rank,
                  dr = d.qk_rope_head_dim;
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
    out.push_back({attn("kv_a_proj_with_mqa.weight"), {r + dr, D}});
    if (c.attention_bias) {
      out.push_back({attn("kv_a_proj_with_mqa.bias"), {r + dr}});
    }
    out.push_back({attn("kv_a_layernorm.weight"), {r}});
    out.push_back({attn("kv_b_proj.weight"),
                   {nh * (d.qk_nope_head_dim + d.v_head_dim), r}});
    out.push_back({n::OProj(l), {D, nh * d.v_head_dim}});
    if (c.attention_bias) out.push_back({attn("o_proj.bias"), {D}});
    out.push_back({n::PostAttentionNorm(l), {D}});
    if (IsMoeLayer(c, l)) {
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

  bool IsMoeLayer(const ModelConfig& c, int64_t layer) const override {
    const auto* d = c.fields<DeepseekV3Config>();
    return d != nullptr && layer >= d->first_k_dense_replace;
  }

  std::optional<int64_t> KvCacheWidth(const ModelConfig& c) const override {
    return c.fields<DeepseekV3Config>()->kv_cache_width();
  }

  absl::Status CheckConvertible(const ModelConfig& c) const override {
    return absl::InvalidArgumentError(
        absl::StrCat("model_type 'deepseek_v3' (", c.architecture,
                     ") is already multi-head latent attention (kv_lora_rank ",
                     c.fields<DeepseekV3Config>()->kv_lora_rank,
                     "); there is no k_proj/v_proj to convert"));
  }

  absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                        compute::Matrix* hidden) const override {
    const DeepseekV3Config& d = *ctx.config.fields<DeepseekV3Config>();
    CARE_RETURN_IF_ERROR(RunMlaBlock(ctx, d, layer, hidden));
    if (IsMoeLayer(ctx.config, layer)) {
      return RunMlpBlock(
          ctx, layer,
          [&](const compute::Matrix& x, compute::Matrix* y) {
            return RunDeepseekV3Moe(ctx, d, layer, x, y);
          },
          /*blocked=*/false, hidden);
    }
    return RunDenseMlpBlock(ctx, layer, hidden);
  }

  std::vector<WeightRequest> LayerWeightRequests(const ModelConfig& c,
                                                 int64_t layer) const override {
    return DeepseekV3WeightRequests(c, *c.fields<DeepseekV3Config>(), layer);
  }
};

}  // namespace

const DecoderFamily& DeepseekV3() {
  static const DeepseekV3Family family;
  return family;
}

}  // namespace care::engine
