#include "care/engine/attention_block.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "care/engine/attention.h"
#include "care/engine/kv_projector.h"
#include "care/engine/rms_norm.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

absl::Status WithLayer(const absl::Status& status, int64_t layer,
                       absl::string_view what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("layer ", layer, " ", what,
                                                  ": ", status.message()));
}

}  // namespace

absl::StatusOr<Eigen::RowVectorXf> LoadNormWeight(const TensorSource& source,
                                                  const std::string& name,
                                                  int64_t n) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {n}));
  return Eigen::RowVectorXf(
      Eigen::Map<const Eigen::RowVectorXf>(t.data.data(), n));
}

absl::Status RunAttentionBlock(const LayerContext& ctx, int64_t layer,
                               const AttentionBlockOptions& options,
                               MatrixRM* hidden) {
  const ModelConfig& c = ctx.config;
  const TensorSource& src = ctx.weights;
  const int64_t D = c.hidden_size, dh = c.head_dim;
  const int64_t q_width = c.num_attention_heads * dh;
  namespace n = io::names;

  CARE_ASSIGN_OR_RETURN(Eigen::RowVectorXf ln,
                        LoadNormWeight(src, n::InputNorm(layer), D));
  MatrixRM x;
  RmsNorm(*hidden, ln, c.rms_norm_eps, &x);  // [tokens, D]
  if (ctx.hooks.on_kv_input) {
    CARE_RETURN_IF_ERROR(
        WithLayer(ctx.hooks.on_kv_input(layer, x), layer, "on_kv_input hook"));
  }
  std::unique_ptr<KvProjector> projector;
  if (ctx.hooks.make_kv_projector) {
    auto made = ctx.hooks.make_kv_projector(layer);
    CARE_RETURN_IF_ERROR(
        WithLayer(made.status(), layer, "make_kv_projector hook"));
    projector = std::move(made).value();
  }
  if (projector == nullptr) {
    CARE_ASSIGN_OR_RETURN(projector, LoadKvProjector(c, src, layer));
  }

  MatrixRM q, k, v;
  {
    CARE_ASSIGN_OR_RETURN(Tensor w_q,
                          LoadChecked(src, n::QProj(layer), {q_width, D}));
    q.resize(x.rows(), q_width);
    q.noalias() = x * w_q.matrix().transpose();  // [tokens, n_h * d_h]
  }
  if (options.q_bias) {
    CARE_ASSIGN_OR_RETURN(Eigen::RowVectorXf b_q,
                          LoadNormWeight(src, n::QBias(layer), q_width));
    q.rowwise() += b_q;
  }
  CARE_RETURN_IF_ERROR(
      WithLayer(projector->Project(x, &k, &v), layer, "K/V projection"));
  projector.reset();
  if (k.rows() != x.rows() || k.cols() != c.kv_width() ||
      v.rows() != x.rows() || v.cols() != c.kv_width()) {
    return absl::InternalError(
        absl::StrCat("layer ", layer, ": K/V projector returned K ", k.rows(),
                     "x", k.cols(), " and V ", v.rows(), "x", v.cols(),
                     ", expected ", x.rows(), "x", c.kv_width()));
  }
  x.resize(0, 0);
  if (options.qk_norm) {
    CARE_ASSIGN_OR_RETURN(Eigen::RowVectorXf q_norm,
                          LoadNormWeight(src, n::QNorm(layer), dh));
    CARE_ASSIGN_OR_RETURN(Eigen::RowVectorXf k_norm,
                          LoadNormWeight(src, n::KNorm(layer), dh));
    RmsNormGroupsInPlace(q_norm, c.rms_norm_eps, dh, &q);
    RmsNormGroupsInPlace(k_norm, c.rms_norm_eps, dh, &k);
  }
  ctx.rope.Apply(dh, &q);
  ctx.rope.Apply(dh, &k);

  MatrixRM attn;  // [tokens, n_h * d_h]
  CausalAttention({.windows = ctx.windows,
                   .seq_len = ctx.seq_len,
                   .heads = c.num_attention_heads,
                   .kv_heads = c.num_key_value_heads,
                   .head_dim = dh},
                  q, k, v, &attn);
  q.resize(0, 0);
  k.resize(0, 0);
  v.resize(0, 0);
  CARE_ASSIGN_OR_RETURN(Tensor w_o,
                        LoadChecked(src, n::OProj(layer), {D, q_width}));
  hidden->noalias() += attn * w_o.matrix().transpose();  // [tokens, D]
  // Loaded when present: transformers gives Llama/Qwen3 an o_proj bias with
  // attention_bias, but checkpoints converted from elsewhere may lack it.
  const std::string o_bias = n::Layer(layer, "self_attn.o_proj.bias");
  if (options.o_bias && src.Has(o_bias)) {
    CARE_ASSIGN_OR_RETURN(Eigen::RowVectorXf b_o,
                          LoadNormWeight(src, o_bias, D));
    hidden->rowwise() += b_o;
  }
  return absl::OkStatus();
}

absl::Status RunMlpBlock(const LayerContext& ctx, int64_t layer,
                         const MlpFn& mlp, MatrixRM* hidden) {
  CARE_ASSIGN_OR_RETURN(
      Eigen::RowVectorXf ln,
      LoadNormWeight(ctx.weights, io::names::PostAttentionNorm(layer),
                     ctx.config.hidden_size));
  MatrixRM x, y;
  RmsNorm(*hidden, ln, ctx.config.rms_norm_eps, &x);  // [tokens, D]
  CARE_RETURN_IF_ERROR(mlp(x, &y));
  *hidden += y;
  return absl::OkStatus();
}

}  // namespace care::engine
