#include "care/engine/attention_block.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/engine/kv_projector.h"
#include "care/engine/mlp.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

struct AttentionWeights {
  compute::Weight w_q, w_o;  // [n_h * d_h, D], [D, n_h * d_h]
  std::optional<compute::Matrix> b_q, b_o, q_norm, k_norm;  // [1, n]
};

absl::StatusOr<AttentionWeights> LoadAttentionWeights(
    const LayerContext& ctx, int64_t layer,
    const AttentionBlockOptions& options) {
  const ModelConfig& c = ctx.config;
  const TensorSource& src = ctx.weights;
  compute::Backend& be = ctx.backend;
  const int64_t D = c.hidden_size, dh = c.head_dim;
  const int64_t q_width = c.num_attention_heads * dh;
  namespace n = io::names;
  AttentionWeights w;
  CARE_ASSIGN_OR_RETURN(w.w_q, LayerWeight(ctx, n::QProj(layer), q_width, D));
  CARE_ASSIGN_OR_RETURN(w.w_o, LayerWeight(ctx, n::OProj(layer), D, q_width));
  if (options.q_bias) {
    CARE_ASSIGN_OR_RETURN(w.b_q, LoadRowOn(be, src, n::QBias(layer), q_width));
  }
  // Loaded when present: transformers gives Llama/Qwen3 an o_proj bias with
  // attention_bias, but checkpoints converted from elsewhere may lack it.
  const std::string o_bias = n::Layer(layer, "self_attn.o_proj.bias");
  if (options.o_bias && src.Has(o_bias)) {
    CARE_ASSIGN_OR_RETURN(w.b_o, LoadRowOn(be, src, o_bias, D));
  }
  if (options.qk_norm) {
    CARE_ASSIGN_OR_RETURN(w.q_norm, LoadRowOn(be, src, n::QNorm(layer), dh));
    CARE_ASSIGN_OR_RETURN(w.k_norm, LoadRowOn(be, src, n::KNorm(layer), dh));
  }
  return w;
}

const compute::Matrix* OrNull(const std::optional<compute::Matrix>& m) {
  return m.has_value() ? &*m : nullptr;
}

// Attention for windows [w0, w0 + nw): hidden rows of those windows +=
// o_proj(attention). x holds the normalized input rows of the same windows.
absl::Status AttendWindows(const LayerContext& ctx, const AttentionWeights& w,
                           const KvProjector& projector,
                           const compute::Matrix& x, int64_t row0, int64_t nw,
                           compute::Matrix* hidden) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  const int64_t dh = c.head_dim, rows = x.rows;
  CARE_ASSIGN_OR_RETURN(compute::Matrix q, be.Allocate(rows, w.w_q.rows));
  CARE_RETURN_IF_ERROR(
      be.Linear(x, w.w_q, OrNull(w.b_q), &q, false));  // [rows, n_h * d_h]
  compute::Matrix k, v;
  CARE_RETURN_IF_ERROR(
      Annotate(projector.ProjectRows(be, x, row0, &k, &v), "K/V projection"));
  if (k.rows != rows || k.cols != c.kv_width() || v.rows != rows ||
      v.cols != c.kv_width()) {
    return absl::InternalError(absl::StrCat(
        "K/V projector returned K ", k.rows, "x", k.cols, " and V ", v.rows,
        "x", v.cols, ", expected ", rows, "x", c.kv_width()));
  }
  if (w.q_norm.has_value()) {
    CARE_RETURN_IF_ERROR(be.RmsNormGroups(*w.q_norm, c.rms_norm_eps, dh, &q));
    CARE_RETURN_IF_ERROR(be.RmsNormGroups(*w.k_norm, c.rms_norm_eps, dh, &k));
  }
  CARE_RETURN_IF_ERROR(be.ApplyRope(ctx.rope_cos, ctx.rope_sin, dh, &q));
  CARE_RETURN_IF_ERROR(be.ApplyRope(ctx.rope_cos, ctx.rope_sin, dh, &k));
  CARE_ASSIGN_OR_RETURN(compute::Matrix attn,
                        be.Allocate(rows, q.cols));  // [rows, n_h * d_h]
  CARE_RETURN_IF_ERROR(be.CausalAttention({.windows = nw,
                                           .seq_len = ctx.seq_len,
                                           .heads = c.num_attention_heads,
                                           .kv_heads = c.num_key_value_heads,
                                           .head_dim = dh},
                                          q, k, v, &attn));
  q = {};
  k = {};
  v = {};
  compute::Matrix h = compute::RowsView(*hidden, row0, rows);
  return be.Linear(attn, w.w_o, OrNull(w.b_o), &h, /*accumulate=*/true);
}

}  // namespace

absl::Status RunAttentionBlock(const LayerContext& ctx, int64_t layer,
                               const AttentionBlockOptions& options,
                               compute::Matrix* hidden) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  CARE_ASSIGN_OR_RETURN(
      compute::Matrix ln,
      LoadRowOn(be, ctx.weights, io::names::InputNorm(layer), c.hidden_size));
  CARE_ASSIGN_OR_RETURN(compute::Matrix x,
                        be.Allocate(hidden->rows, hidden->cols));
  CARE_RETURN_IF_ERROR(
      be.RmsNorm(*hidden, ln, c.rms_norm_eps, &x));  // [tokens, D]
  if (ctx.hooks.on_kv_input) {
    CARE_RETURN_IF_ERROR(
        Annotate(ctx.hooks.on_kv_input(layer, x), "on_kv_input hook"));
  }
  std::unique_ptr<KvProjector> projector;
  if (ctx.hooks.make_kv_projector) {
    auto made = ctx.hooks.make_kv_projector(layer);
    CARE_RETURN_IF_ERROR(Annotate(made.status(), "make_kv_projector hook"));
    projector = std::move(made).value();
  }
  if (projector == nullptr) {
    CARE_ASSIGN_OR_RETURN(
        projector, LoadKvProjector(c, ctx.weights, layer, be, ctx.prefetch));
  }
  CARE_ASSIGN_OR_RETURN(AttentionWeights w,
                        LoadAttentionWeights(ctx, layer, options));
  const int64_t T = ctx.seq_len;
  const int64_t group = std::max<int64_t>(1, (ctx.group_tokens + T - 1) / T);
  for (int64_t w0 = 0; w0 < ctx.windows; w0 += group) {
    const int64_t nw = std::min(group, ctx.windows - w0);
    const compute::Matrix xg =
        compute::RowsView(x, w0 * T, nw * T);  // [nw * T, D]
    CARE_RETURN_IF_ERROR(
        AttendWindows(ctx, w, *projector, xg, w0 * T, nw, hidden));
  }
  return absl::OkStatus();
}

absl::Status RunMlpBlock(const LayerContext& ctx, int64_t layer,
                         const MlpFn& mlp, bool blocked,
                         compute::Matrix* hidden) {
  compute::Backend& be = ctx.backend;
  CARE_ASSIGN_OR_RETURN(
      compute::Matrix ln,
      LoadRowOn(be, ctx.weights, io::names::PostAttentionNorm(layer),
                ctx.config.hidden_size));
  const int64_t tokens = hidden->rows;
  const int64_t block = blocked ? ctx.group_tokens : tokens;
  compute::Matrix x, y;
  for (int64_t r0 = 0; r0 < tokens; r0 += block) {
    const int64_t n = std::min(block, tokens - r0);
    if (x.rows != n) {
      CARE_ASSIGN_OR_RETURN(x, be.Allocate(n, hidden->cols));
      CARE_ASSIGN_OR_RETURN(y, be.Allocate(n, hidden->cols));
    }
    compute::Matrix h = compute::RowsView(*hidden, r0, n);
    CARE_RETURN_IF_ERROR(
        be.RmsNorm(h, ln, ctx.config.rms_norm_eps, &x));  // [n, D]
    CARE_RETURN_IF_ERROR(mlp(x, &y));                     // [n, D]
    CARE_RETURN_IF_ERROR(be.Add(y, &h));
  }
  return absl::OkStatus();
}

absl::Status RunDenseMlpBlock(const LayerContext& ctx, int64_t layer,
                              compute::Matrix* hidden) {
  CARE_ASSIGN_OR_RETURN(
      SwiGluWeights mlp,
      LoadSwiGlu(ctx.backend, ctx.weights, io::names::Layer(layer, "mlp."),
                 ctx.config.hidden_size, ctx.config.intermediate_size,
                 ctx.prefetch));
  return RunMlpBlock(
      ctx, layer,
      [&](const compute::Matrix& x, compute::Matrix* y) {
        return SwiGlu(ctx.backend, mlp, x, y);
      },
      /*blocked=*/true, hidden);
}

}  // namespace care::engine
