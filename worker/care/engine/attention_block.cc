#include "care/engine/attention_block.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "care/engine/attention.h"
#include "care/engine/kv_projector.h"
#include "care/engine/mlp.h"
#include "care/engine/rms_norm.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

// Prefixes what failed; LayerwiseForward::RunLayer adds "layer l: ".
absl::Status WithContext(const absl::Status& status, absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(what, ": ", status.message()));
}

}  // namespace

absl::StatusOr<Eigen::RowVectorXf> LoadNormWeight(const TensorSource& source,
                                                  const std::string& name,
                                                  int64_t n) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {n}));
  return Eigen::RowVectorXf(
      Eigen::Map<const Eigen::RowVectorXf>(t.data.data(), n));
}

namespace {

struct AttentionWeights {
  Tensor w_q, w_o;  // [n_h * d_h, D], [D, n_h * d_h]
  std::optional<Eigen::RowVectorXf> b_q, b_o, q_norm, k_norm;
};

absl::StatusOr<AttentionWeights> LoadAttentionWeights(
    const LayerContext& ctx, int64_t layer,
    const AttentionBlockOptions& options) {
  const ModelConfig& c = ctx.config;
  const TensorSource& src = ctx.weights;
  const int64_t D = c.hidden_size, dh = c.head_dim;
  const int64_t q_width = c.num_attention_heads * dh;
  namespace n = io::names;
  AttentionWeights w;
  CARE_ASSIGN_OR_RETURN(w.w_q, LoadChecked(src, n::QProj(layer), {q_width, D}));
  CARE_ASSIGN_OR_RETURN(w.w_o, LoadChecked(src, n::OProj(layer), {D, q_width}));
  if (options.q_bias) {
    CARE_ASSIGN_OR_RETURN(w.b_q, LoadNormWeight(src, n::QBias(layer), q_width));
  }
  // Loaded when present: transformers gives Llama/Qwen3 an o_proj bias with
  // attention_bias, but checkpoints converted from elsewhere may lack it.
  const std::string o_bias = n::Layer(layer, "self_attn.o_proj.bias");
  if (options.o_bias && src.Has(o_bias)) {
    CARE_ASSIGN_OR_RETURN(w.b_o, LoadNormWeight(src, o_bias, D));
  }
  if (options.qk_norm) {
    CARE_ASSIGN_OR_RETURN(w.q_norm, LoadNormWeight(src, n::QNorm(layer), dh));
    CARE_ASSIGN_OR_RETURN(w.k_norm, LoadNormWeight(src, n::KNorm(layer), dh));
  }
  return w;
}

// Attention for windows [w0, w0 + nw): hidden rows of those windows +=
// o_proj(attention). x holds the normalized input rows of the same windows.
absl::Status AttendWindows(const LayerContext& ctx, const AttentionWeights& w,
                           const KvProjector& projector, const MatrixRM& x,
                           int64_t row0, int64_t nw, MatrixRM* hidden) {
  const ModelConfig& c = ctx.config;
  const int64_t dh = c.head_dim, rows = x.rows();
  MatrixRM q, k, v;
  q.resize(rows, w.w_q.shape[0]);
  q.noalias() = x * w.w_q.matrix().transpose();  // [rows, n_h * d_h]
  if (w.b_q.has_value()) q.rowwise() += *w.b_q;
  CARE_RETURN_IF_ERROR(
      WithContext(projector.Project(x, &k, &v), "K/V projection"));
  if (k.rows() != rows || k.cols() != c.kv_width() || v.rows() != rows ||
      v.cols() != c.kv_width()) {
    return absl::InternalError(absl::StrCat(
        "K/V projector returned K ", k.rows(), "x", k.cols(), " and V ",
        v.rows(), "x", v.cols(), ", expected ", rows, "x", c.kv_width()));
  }
  if (w.q_norm.has_value()) {
    RmsNormGroupsInPlace(*w.q_norm, c.rms_norm_eps, dh, &q);
    RmsNormGroupsInPlace(*w.k_norm, c.rms_norm_eps, dh, &k);
  }
  ctx.rope.Apply(dh, &q);
  ctx.rope.Apply(dh, &k);
  MatrixRM attn;  // [rows, n_h * d_h]
  CausalAttention({.windows = nw,
                   .seq_len = ctx.seq_len,
                   .heads = c.num_attention_heads,
                   .kv_heads = c.num_key_value_heads,
                   .head_dim = dh},
                  q, k, v, &attn);
  q.resize(0, 0);
  k.resize(0, 0);
  v.resize(0, 0);
  auto h = hidden->middleRows(row0, rows);
  h.noalias() += attn * w.w_o.matrix().transpose();  // [rows, D]
  if (w.b_o.has_value()) h.rowwise() += *w.b_o;
  return absl::OkStatus();
}

}  // namespace

absl::Status RunAttentionBlock(const LayerContext& ctx, int64_t layer,
                               const AttentionBlockOptions& options,
                               MatrixRM* hidden) {
  const ModelConfig& c = ctx.config;
  const TensorSource& src = ctx.weights;
  CARE_ASSIGN_OR_RETURN(
      Eigen::RowVectorXf ln,
      LoadNormWeight(src, io::names::InputNorm(layer), c.hidden_size));
  MatrixRM x;
  RmsNorm(*hidden, ln, c.rms_norm_eps, &x);  // [tokens, D]
  if (ctx.hooks.on_kv_input) {
    CARE_RETURN_IF_ERROR(
        WithContext(ctx.hooks.on_kv_input(layer, x), "on_kv_input hook"));
  }
  std::unique_ptr<KvProjector> projector;
  if (ctx.hooks.make_kv_projector) {
    auto made = ctx.hooks.make_kv_projector(layer);
    CARE_RETURN_IF_ERROR(WithContext(made.status(), "make_kv_projector hook"));
    projector = std::move(made).value();
  }
  if (projector == nullptr) {
    CARE_ASSIGN_OR_RETURN(projector, LoadKvProjector(c, src, layer));
  }
  CARE_ASSIGN_OR_RETURN(AttentionWeights w,
                        LoadAttentionWeights(ctx, layer, options));
  const int64_t T = ctx.seq_len;
  const int64_t group = std::max<int64_t>(1, (ctx.group_tokens + T - 1) / T);
  if (group >= ctx.windows) {
    return AttendWindows(ctx, w, *projector, x, 0, ctx.windows, hidden);
  }
  MatrixRM xg;
  for (int64_t w0 = 0; w0 < ctx.windows; w0 += group) {
    const int64_t nw = std::min(group, ctx.windows - w0);
    xg = x.middleRows(w0 * T, nw * T);  // [nw * T, D]
    CARE_RETURN_IF_ERROR(
        AttendWindows(ctx, w, *projector, xg, w0 * T, nw, hidden));
  }
  return absl::OkStatus();
}

absl::Status RunMlpBlock(const LayerContext& ctx, int64_t layer,
                         const MlpFn& mlp, bool blocked, MatrixRM* hidden) {
  CARE_ASSIGN_OR_RETURN(
      Eigen::RowVectorXf ln,
      LoadNormWeight(ctx.weights, io::names::PostAttentionNorm(layer),
                     ctx.config.hidden_size));
  const int64_t tokens = hidden->rows();
  const int64_t block = blocked ? ctx.group_tokens : tokens;
  MatrixRM x, y;
  for (int64_t r0 = 0; r0 < tokens; r0 += block) {
    const int64_t n = std::min(block, tokens - r0);
    x = hidden->middleRows(r0, n);
    RmsNorm(x, ln, ctx.config.rms_norm_eps, &x);  // [n, D]
    CARE_RETURN_IF_ERROR(mlp(x, &y));             // [n, D]
    hidden->middleRows(r0, n) += y;
  }
  return absl::OkStatus();
}

absl::Status RunDenseMlpBlock(const LayerContext& ctx, int64_t layer,
                              MatrixRM* hidden) {
  CARE_ASSIGN_OR_RETURN(
      SwiGluWeights mlp,
      LoadSwiGlu(ctx.weights, io::names::Layer(layer, "mlp."),
                 ctx.config.hidden_size, ctx.config.intermediate_size));
  return RunMlpBlock(
      ctx, layer,
      [&](const MatrixRM& x, MatrixRM* y) {
        SwiGlu(mlp, x, y);
        return absl::OkStatus();
      },
      /*blocked=*/true, hidden);
}

}  // namespace care::engine
