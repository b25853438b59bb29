#include "care/engine/families/gqa_family.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/attention_block.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace n = io::names;

absl::Status GqaFamily::ParseFields(const ConfigReader& reader,
                                    ModelConfig& config) const {
  switch (traits_.qkv_bias) {
    case GqaTraits::Bias::kFromConfig: {
      CARE_ASSIGN_OR_RETURN(config.attention_bias,
                            reader.BoolOr("attention_bias", false));
      break;
    }
    case GqaTraits::Bias::kAlways:
      config.attention_bias = true;
      break;
    case GqaTraits::Bias::kNever:
      config.attention_bias = false;
      break;
  }
  config.o_proj_bias = traits_.o_proj_bias_with_qkv && config.attention_bias;
  config.qk_norm = traits_.qk_norm;
  // Read leniently, as transformers does: null or absent means none.
  if (traits_.sliding_window && reader.Present("sliding_window") &&
      reader.Get("sliding_window").is_number_integer()) {
    config.sliding_window = reader.Get("sliding_window").get<int64_t>();
  }
  return absl::OkStatus();
}

void GqaFamily::AppendLayerTensors(const ModelConfig& c, int64_t l,
                                   std::vector<io::ExpectedTensor>& out) const {
  const int64_t d = c.hidden_size;
  const int64_t q_width = c.num_attention_heads * c.head_dim;  // n_h * d_h
  const int64_t kv_width = c.kv_width();                       // g * d_h
  out.push_back({n::InputNorm(l), {d}});
  out.push_back({n::QProj(l), {q_width, d}});
  if (c.latent) {
    const int64_t rk = c.latent->rank_k[l];
    const int64_t rv = c.latent->rank_v[l];
    out.push_back({n::KAProj(l), {rk, d}});
    out.push_back({n::KBProj(l), {kv_width, rk}});
    out.push_back({n::VAProj(l), {rv, d}});
    out.push_back({n::VBProj(l), {kv_width, rv}});
  } else {
    out.push_back({n::KProj(l), {kv_width, d}});
    out.push_back({n::VProj(l), {kv_width, d}});
  }
  out.push_back({n::OProj(l), {d, q_width}});
  // o_proj.bias is not required: checkpoints converted from elsewhere may
  // lack it (the forward loads it when present).
  if (c.attention_bias) {
    out.push_back({n::QBias(l), {q_width}});
    out.push_back({c.latent ? n::KBBias(l) : n::KBias(l), {kv_width}});
    out.push_back({c.latent ? n::VBBias(l) : n::VBias(l), {kv_width}});
  }
  if (c.qk_norm) {
    out.push_back({n::QNorm(l), {c.head_dim}});
    out.push_back({n::KNorm(l), {c.head_dim}});
  }
  out.push_back({n::PostAttentionNorm(l), {d}});
  AppendMlpTensors(c, l, out);
}

void GqaFamily::AppendMlpTensors(const ModelConfig& c, int64_t l,
                                 std::vector<io::ExpectedTensor>& out) const {
  const int64_t d = c.hidden_size;
  out.push_back({n::GateProj(l), {c.intermediate_size, d}});
  out.push_back({n::UpProj(l), {c.intermediate_size, d}});
  out.push_back({n::DownProj(l), {d, c.intermediate_size}});
}

absl::Status GqaFamily::CheckConvertible(const ModelConfig& c) const {
  if (c.num_key_value_heads < 1 || c.head_dim < 1 ||
      c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention is not GQA/MHA (num_attention_heads ", c.num_attention_heads,
        ", num_key_value_heads ", c.num_key_value_heads, ", head_dim ",
        c.head_dim,
        "); need num_key_value_heads >= 1 dividing num_attention_heads"));
  }
  return absl::OkStatus();
}

absl::Status GqaFamily::RunLayer(const LayerContext& ctx, int64_t layer,
                                 compute::Matrix* hidden) const {
  const ModelConfig& c = ctx.config;
  CARE_RETURN_IF_ERROR(RunAttentionBlock(ctx, layer,
                                         {.qk_norm = c.qk_norm,
                                          .q_bias = c.attention_bias,
                                          .o_bias = c.o_proj_bias},
                                         hidden));
  return RunMlp(ctx, layer, hidden);
}

absl::Status GqaFamily::RunMlp(const LayerContext& ctx, int64_t layer,
                               compute::Matrix* hidden) const {
  return RunDenseMlpBlock(ctx, layer, hidden);
}

std::vector<WeightRequest> GqaFamily::LayerWeightRequests(const ModelConfig& c,
                                                          int64_t layer) const {
  const int64_t D = c.hidden_size, q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.kv_width(), I = c.intermediate_size;
  std::vector<WeightRequest> r = {{n::QProj(layer), q, D},
                                  {n::OProj(layer), D, q}};
  if (!c.latent.has_value()) {
    r.push_back({n::KProj(layer), kv, D});
    r.push_back({n::VProj(layer), kv, D});
  }
  if (!c.IsMoeLayer(layer) && I > 0) {
    r.push_back({n::GateProj(layer), I, D});
    r.push_back({n::UpProj(layer), I, D});
    r.push_back({n::DownProj(layer), D, I});
  }
  return r;
}

}  // namespace care::engine
