// The halves of a DeepSeek-V3 decoder layer, as transformers'
// DeepseekV3DecoderLayer runs them: multi-head latent attention (MLA) and
// the sigmoid-routed MoE with shared experts (deepseek_v3_layer.h).
//
// Attention, per token (x = input_layernorm(h), eps 1e-6 for the latent
// norms whatever rms_norm_eps says):
//   q    = q_b_proj(q_a_layernorm(q_a_proj(x)))   or q_proj(x)  [n_h, qk]
//   ckv  = kv_a_proj_with_mqa(x) = [c_kv (r); k_pe (d_r)]
//   kv   = kv_b_proj(kv_a_layernorm(c_kv)) = per head [k_nope; v]
//   score_h = (q_nope·k_nope_h + RoPE(q_pe)·RoPE(k_pe)) · softmax_scale
// with one k_pe shared by all heads. Layout trick: the q and kv_a rows are
// loaded reordered so that each head reads [q_pe; q_nope] and ckv reads
// [k_pe; c_kv], with rope_interleave's pair de-interleave folded into the
// order; then the backend's rotate_half RoPE rotates exactly the first d_r
// entries, and q·k is unchanged because q and k share the layout.
#include "care/engine/families/deepseek_v3_layer.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/attention_block.h"
#include "care/engine/mlp.h"
#include "care/engine/routed_experts.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

constexpr double kLatentNormEps = 1e-6;  // DeepseekV3RMSNorm's default

std::string Attn(int64_t l, absl::string_view s) {
  return io::names::Layer(l, absl::StrCat("self_attn.", s));
}

// Source index of entry i of a rotary block of width dr: with
// rope_interleave, transformers gathers the pairs (x0, x1), (x2, x3), .. as
// [x0, x2, .., x1, x3, ..] before rotate_half.
int64_t RopeSource(int64_t i, int64_t dr, bool interleave) {
  if (!interleave) return i;
  const int64_t half = dr / 2;
  return i < half ? 2 * i : 2 * (i - half) + 1;
}

// Rows of a q projection [n_h * (nope + d_r), *] with each head reordered to
// [q_pe (de-interleaved); q_nope].
std::vector<int64_t> QRows(const DeepseekV3Config& d, int64_t heads) {
  const int64_t nope = d.qk_nope_head_dim, dr = d.qk_rope_head_dim;
  std::vector<int64_t> rows;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t base = h * (nope + dr);
    for (int64_t i = 0; i < dr; ++i) {
      rows.push_back(base + nope + RopeSource(i, dr, d.rope_interleave));
    }
    for (int64_t j = 0; j < nope; ++j) rows.push_back(base + j);
  }
  return rows;
}

// Rows of kv_a_proj_with_mqa [r + d_r, *] reordered to [k_pe; c_kv].
std::vector<int64_t> KvaRows(const DeepseekV3Config& d) {
  const int64_t r = d.kv_lora_rank, dr = d.qk_rope_head_dim;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < dr; ++i) {
    rows.push_back(r + RopeSource(i, dr, d.rope_interleave));
  }
  for (int64_t j = 0; j < r; ++j) rows.push_back(j);
  return rows;
}

// The k_nope (first) or v rows of kv_b_proj [n_h * (nope + d_v), r].
std::vector<int64_t> KvbRows(const DeepseekV3Config& d, int64_t heads,
                             bool value) {
  const int64_t nope = d.qk_nope_head_dim, dv = d.v_head_dim;
  std::vector<int64_t> rows;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t base = h * (nope + dv) + (value ? nope : 0);
    for (int64_t j = 0; j < (value ? dv : nope); ++j) rows.push_back(base + j);
  }
  return rows;
}

struct MlaWeights {
  std::optional<compute::Weight> w_q;            // [n_h*qk, D] (reordered)
  std::optional<compute::Weight> w_qa, w_qb;     // [r_q, D], [n_h*qk, r_q]
  std::optional<compute::Matrix> b_qa, qa_norm;  // [1, r_q]
  compute::Weight w_kva;                         // [d_r + r, D] (reordered)
  std::optional<compute::Matrix> b_kva;          // [1, d_r + r]
  compute::Matrix kv_norm;                       // [1, r]
  compute::Weight w_knope, w_v;                  // [n_h*nope, r], [n_h*d_v, r]
  compute::Weight w_o;                           // [D, n_h*d_v]
  std::optional<compute::Matrix> b_o;            // [1, D]
};

absl::StatusOr<MlaWeights> LoadMlaWeights(const LayerContext& ctx,
                                          const DeepseekV3Config& d,
                                          int64_t l) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  const TensorSource& src = ctx.weights;
  const int64_t D = c.hidden_size, nh = c.num_attention_heads;
  const int64_t qk = d.qk_head_dim(), r = d.kv_lora_rank,
                dr = d.qk_rope_head_dim;
  MlaWeights w;
  if (d.q_lora_rank) {
    const int64_t rq = *d.q_lora_rank;
    CARE_ASSIGN_OR_RETURN(w.w_qa,
                          LayerWeight(ctx, Attn(l, "q_a_proj.weight"), rq, D));
    if (c.attention_bias) {
      CARE_ASSIGN_OR_RETURN(w.b_qa,
                            LoadRowOn(be, src, Attn(l, "q_a_proj.bias"), rq));
    }
    CARE_ASSIGN_OR_RETURN(
        w.qa_norm, LoadRowOn(be, src, Attn(l, "q_a_layernorm.weight"), rq));
    CARE_ASSIGN_OR_RETURN(
        w.w_qb, LoadWeightRowsInOrderOn(be, src, Attn(l, "q_b_proj.weight"),
                                        nh * qk, rq, QRows(d, nh)));
  } else {
    CARE_ASSIGN_OR_RETURN(
        w.w_q, LoadWeightRowsInOrderOn(be, src, io::names::QProj(l), nh * qk, D,
                                       QRows(d, nh)));
  }
  const std::vector<int64_t> kva_rows = KvaRows(d);
  CARE_ASSIGN_OR_RETURN(
      w.w_kva,
      LoadWeightRowsInOrderOn(be, src, Attn(l, "kv_a_proj_with_mqa.weight"),
                              r + dr, D, kva_rows));
  if (c.attention_bias) {
    CARE_ASSIGN_OR_RETURN(
        Tensor b,
        LoadChecked(src, Attn(l, "kv_a_proj_with_mqa.bias"), {r + dr}));
    std::vector<float> reordered;
    for (int64_t i : kva_rows) reordered.push_back(b.data[i]);
    CARE_ASSIGN_OR_RETURN(w.b_kva, be.Upload(reordered.data(), 1, r + dr));
    CARE_ASSIGN_OR_RETURN(w.b_o, LoadRowOn(be, src, Attn(l, "o_proj.bias"), D));
  }
  CARE_ASSIGN_OR_RETURN(
      w.kv_norm, LoadRowOn(be, src, Attn(l, "kv_a_layernorm.weight"), r));
  const std::string kvb = Attn(l, "kv_b_proj.weight");
  const int64_t kvb_rows = nh * (d.qk_nope_head_dim + d.v_head_dim);
  CARE_ASSIGN_OR_RETURN(w.w_knope,
                        LoadWeightRowsInOrderOn(be, src, kvb, kvb_rows, r,
                                                KvbRows(d, nh, false)));
  CARE_ASSIGN_OR_RETURN(
      w.w_v,
      LoadWeightRowsInOrderOn(be, src, kvb, kvb_rows, r, KvbRows(d, nh, true)));
  CARE_ASSIGN_OR_RETURN(
      w.w_o, LayerWeight(ctx, io::names::OProj(l), D, nh * d.v_head_dim));
  return w;
}

const compute::Matrix* OrNull(const std::optional<compute::Matrix>& m) {
  return m.has_value() ? &*m : nullptr;
}

// Attention for the windows whose normalized rows are x [rows, D] (starting
// at hidden row row0): hidden rows += o_proj(MLA(x)).
absl::Status AttendWindows(const LayerContext& ctx, const DeepseekV3Config& d,
                           const MlaWeights& w, const compute::Matrix& x,
                           int64_t row0, int64_t nw, compute::Matrix* hidden) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  const int64_t rows = x.rows, nh = c.num_attention_heads;
  const int64_t qk = d.qk_head_dim(), nope = d.qk_nope_head_dim,
                dr = d.qk_rope_head_dim, r = d.kv_lora_rank, dv = d.v_head_dim;
  // Queries, each head [q_pe; q_nope].
  compute::Matrix q;
  CARE_ASSIGN_OR_RETURN(q, be.Allocate(rows, nh * qk));
  if (w.w_q.has_value()) {
    CARE_RETURN_IF_ERROR(be.Linear(x, *w.w_q, nullptr, &q, false));
  } else {
    CARE_ASSIGN_OR_RETURN(compute::Matrix qa,
                          be.Allocate(rows, w.w_qa->rows));  // [rows, r_q]
    CARE_RETURN_IF_ERROR(be.Linear(x, *w.w_qa, OrNull(w.b_qa), &qa, false));
    CARE_RETURN_IF_ERROR(be.RmsNorm(qa, *w.qa_norm, kLatentNormEps, &qa));
    CARE_RETURN_IF_ERROR(be.Linear(qa, *w.w_qb, nullptr, &q, false));
  }
  CARE_RETURN_IF_ERROR(
      be.ApplyRope(ctx.rope_cos, ctx.rope_sin, qk, &q));  // [rows, n_h*qk]
  // ckv = [k_pe; c_kv]; k_pe rotated in place, c_kv normalized apart.
  CARE_ASSIGN_OR_RETURN(compute::Matrix ckv, be.Allocate(rows, dr + r));
  CARE_RETURN_IF_ERROR(be.Linear(x, w.w_kva, OrNull(w.b_kva), &ckv, false));
  CARE_RETURN_IF_ERROR(be.ApplyRope(ctx.rope_cos, ctx.rope_sin, dr + r, &ckv));
  CARE_ASSIGN_OR_RETURN(compute::Matrix latent, be.Allocate(rows, r));
  CARE_RETURN_IF_ERROR(be.CopyColumns(
      ckv, {.groups = 1, .width = r, .src_col0 = dr}, &latent));  // [rows, r]
  CARE_RETURN_IF_ERROR(be.RmsNorm(latent, w.kv_norm, kLatentNormEps, &latent));
  // Keys, each head [k_pe (shared); k_nope_h].
  CARE_ASSIGN_OR_RETURN(compute::Matrix k, be.Allocate(rows, nh * qk));
  CARE_RETURN_IF_ERROR(
      be.CopyColumns(ckv, {.groups = nh, .width = dr, .dst_stride = qk}, &k));
  {
    CARE_ASSIGN_OR_RETURN(compute::Matrix k_nope,
                          be.Allocate(rows, nh * nope));  // [rows, n_h*nope]
    CARE_RETURN_IF_ERROR(be.Linear(latent, w.w_knope, nullptr, &k_nope, false));
    CARE_RETURN_IF_ERROR(be.CopyColumns(k_nope,
                                        {.groups = nh,
                                         .width = nope,
                                         .src_stride = nope,
                                         .dst_col0 = dr,
                                         .dst_stride = qk},
                                        &k));
  }
  ckv = {};
  CARE_ASSIGN_OR_RETURN(compute::Matrix v, be.Allocate(rows, nh * dv));
  CARE_RETURN_IF_ERROR(be.Linear(latent, w.w_v, nullptr, &v, false));
  latent = {};
  CARE_ASSIGN_OR_RETURN(compute::Matrix attn, be.Allocate(rows, nh * dv));
  CARE_RETURN_IF_ERROR(be.CausalAttention({.windows = nw,
                                           .seq_len = ctx.seq_len,
                                           .heads = nh,
                                           .kv_heads = nh,
                                           .head_dim = qk,
                                           .v_head_dim = dv,
                                           .scale = d.softmax_scale},
                                          q, k, v, &attn));  // [rows, n_h*d_v]
  q = {};
  k = {};
  v = {};
  compute::Matrix h = compute::RowsView(*hidden, row0, rows);
  return be.Linear(attn, w.w_o, OrNull(w.b_o), &h, /*accumulate=*/true);
}

// ---- MoE

}  // namespace

absl::Status RunMlaBlock(const LayerContext& ctx, const DeepseekV3Config& d,
                         int64_t layer, compute::Matrix* hidden) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  CARE_ASSIGN_OR_RETURN(
      compute::Matrix ln,
      LoadRowOn(be, ctx.weights, io::names::InputNorm(layer), c.hidden_size));
  CARE_ASSIGN_OR_RETURN(compute::Matrix x,
                        be.Allocate(hidden->rows, hidden->cols));
  CARE_RETURN_IF_ERROR(be.RmsNorm(*hidden, ln, c.rms_norm_eps, &x));
  if (ctx.hooks.on_kv_input) {
    absl::Status st = ctx.hooks.on_kv_input(layer, x);
    if (!st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("on_kv_input hook: ", st.message()));
    }
  }
  if (ctx.hooks.make_kv_projector) {
    auto made = ctx.hooks.make_kv_projector(layer);
    if (!made.ok()) {
      return absl::Status(
          made.status().code(),
          absl::StrCat("make_kv_projector hook: ", made.status().message()));
    }
    if (*made != nullptr) {
      return absl::UnimplementedError(
          "make_kv_projector hook: a K/V projector cannot replace the latent "
          "attention of a deepseek_v3 layer");
    }
  }
  CARE_ASSIGN_OR_RETURN(MlaWeights w, LoadMlaWeights(ctx, d, layer));
  const int64_t T = ctx.seq_len;
  const int64_t group = std::max<int64_t>(1, (ctx.group_tokens + T - 1) / T);
  for (int64_t w0 = 0; w0 < ctx.windows; w0 += group) {
    const int64_t nw = std::min(group, ctx.windows - w0);
    CARE_RETURN_IF_ERROR(AttendWindows(
        ctx, d, w, compute::RowsView(x, w0 * T, nw * T), w0 * T, nw, hidden));
  }
  return absl::OkStatus();
}

// y [T, D] = Σ routed experts (weights already scaled) + shared experts.
absl::Status RunDeepseekV3Moe(const LayerContext& ctx,
                              const DeepseekV3Config& d, int64_t layer,
                              const compute::Matrix& x, compute::Matrix* y) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  const int64_t D = c.hidden_size, E = d.n_routed_experts, T = x.rows;
  const int64_t k = d.num_experts_per_tok, I = d.moe_intermediate_size;
  compute::Routing routing;
  {
    CARE_ASSIGN_OR_RETURN(
        compute::Weight gate,
        LoadWeightOn(be, ctx.weights, io::names::Router(layer), E, D));
    CARE_ASSIGN_OR_RETURN(
        compute::Matrix bias,
        LoadRowOn(be, ctx.weights,
                  io::names::Layer(layer, "mlp.gate.e_score_correction_bias"),
                  E));
    CARE_ASSIGN_OR_RETURN(compute::Matrix logits, be.Allocate(T, E));
    CARE_RETURN_IF_ERROR(be.Linear(x, gate, nullptr, &logits, false));
    CARE_ASSIGN_OR_RETURN(
        routing, be.RouteGroupedTopK(logits, bias,
                                     {.k = k,
                                      .groups = d.n_group,
                                      .topk_groups = d.topk_group,
                                      .renormalize = d.norm_topk_prob,
                                      .scale = d.routed_scaling_factor}));
  }
  CARE_RETURN_IF_ERROR(
      RunRoutedExperts(be, ctx.weights, layer, x, routing, E, I, y));
  if (d.n_shared_experts > 0) {
    CARE_ASSIGN_OR_RETURN(
        SwiGluWeights shared,
        LoadSwiGlu(be, ctx.weights,
                   io::names::Layer(layer, "mlp.shared_experts."), D,
                   I * d.n_shared_experts, ctx.prefetch));
    CARE_ASSIGN_OR_RETURN(compute::Matrix ys, be.Allocate(T, D));
    CARE_RETURN_IF_ERROR(SwiGlu(be, shared, x, &ys));  // [T, D]
    CARE_RETURN_IF_ERROR(be.Add(ys, y));
  }
  return absl::OkStatus();
}

std::vector<WeightRequest> DeepseekV3WeightRequests(const ModelConfig& c,
                                                    const DeepseekV3Config& d,
                                                    int64_t layer) {
  const int64_t D = c.hidden_size;
  std::vector<WeightRequest> r = {
      {io::names::OProj(layer), D, c.num_attention_heads * d.v_head_dim}};
  if (d.q_lora_rank) {
    r.push_back({Attn(layer, "q_a_proj.weight"), *d.q_lora_rank, D});
  }
  const bool moe = c.IsMoeLayer(layer);
  if (moe && d.n_shared_experts == 0) return r;
  const int64_t I =
      moe ? d.moe_intermediate_size * d.n_shared_experts : c.intermediate_size;
  const std::string mlp =
      io::names::Layer(layer, moe ? "mlp.shared_experts." : "mlp.");
  r.push_back({mlp + "gate_proj.weight", I, D});
  r.push_back({mlp + "up_proj.weight", I, D});
  r.push_back({mlp + "down_proj.weight", D, I});
  return r;
}

}  // namespace care::engine
