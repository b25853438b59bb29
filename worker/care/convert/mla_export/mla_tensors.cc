#include "care/convert/mla_export/mla_tensors.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/convert/mla_export/mla_bias.h"
#include "care/convert/mla_export/nope_correction.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {

Tensor FromMatrix(const MatrixRM& m) {
  Tensor t;
  t.shape = {m.rows(), m.cols()};
  t.data.assign(m.data(), m.data() + m.size());
  return t;
}

std::string KvAProjName(int64_t l) {
  return io::names::Layer(l, "self_attn.kv_a_proj_with_mqa.weight");
}
std::string KvANormName(int64_t l) {
  return io::names::Layer(l, "self_attn.kv_a_layernorm.weight");
}
std::string KvBProjName(int64_t l) {
  return io::names::Layer(l, "self_attn.kv_b_proj.weight");
}

absl::StatusOr<AttentionTensors> BuildAttentionTensors(
    int64_t layer, const MlaLayer& mla, const Tensor& q_proj,
    const LayerWeights& source_weights, int64_t num_heads,
    const Tensor* q_bias) {
  if (mla.healed) {
    // Healing optimises bias-free layers only (refused up front).
    if (q_bias != nullptr || mla.bias_channel) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer ", layer, ": a healed layer cannot carry attention biases"));
    }
    return HealedTensors(layer, *mla.healed, num_heads, mla.alpha_log2);
  }
  const LayerWeights weights = FoldedWeights(source_weights, mla);
  const RopeSplitShape& rs = mla.rope.shape;
  const int64_t dh = rs.head_dim, rope = rs.rope_dim, g = rs.num_kv_heads;
  const int64_t d = weights.w_k.rows(), r = mla.kv_lora_rank();
  const int64_t rf = mla.fitted_rank();
  if (q_proj.shape != std::vector<int64_t>{num_heads * dh, d}) {
    return absl::InvalidArgumentError(
        absl::StrCat(io::names::QProj(layer), " is ", ShapeString(q_proj.shape),
                     ", expected [", num_heads * dh, ", ", d, "]"));
  }
  const bool bias = mla.bias_channel;
  if (bias && (q_bias == nullptr || !weights.b_k || !weights.b_v ||
               q_bias->shape != std::vector<int64_t>{num_heads * dh})) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", layer, ": the deepseek-v3 bias channel needs q/k/v biases (",
        io::names::QBias(layer), " [", num_heads * dh, "])"));
  }
  const int64_t group = num_heads / g;  // query heads per KV head
  const float s = static_cast<float>(mla.q_scale);
  // [n_h·d_h, D (+1)]: with biases, the q bias is one more column, so every
  // row transform below applies to it as to the weights.
  MatrixRM wq(num_heads * dh, d + (bias ? 1 : 0));
  wq.leftCols(d) = q_proj.matrix();
  if (bias) {
    wq.col(d) =
        Eigen::Map<const Eigen::VectorXf>(q_bias->data.data(), num_heads * dh);
  }
  if (mla.q_regression.rows() == wq.rows()) {
    wq.leftCols(d) = mla.q_regression;  // no biases with this fold
  } else if (mla.q_fold.size() == wq.rows()) {
    wq = mla.q_fold.asDiagonal() * wq;
  }

  MatrixRM q(num_heads * (dh + rope), wq.cols());  // [n_h·(d_h + R), D(+1)]
  for (int64_t h = 0; h < num_heads; ++h) {
    const int64_t j = h / group;
    const auto qh = wq.middleRows(h * dh, dh);  // [d_h, D(+1)]
    MatrixRM q_nope = qh;
    if (!mla.nope_correction.empty()) {
      NopeCorrection c;
      c.m = mla.nope_correction;
      CorrectQueryRows(c, h, dh, q_nope);
    }
    q.middleRows(h * (dh + rope), dh) = s * q_nope;
    q.middleRows(h * (dh + rope) + dh, rope) =
        s * (mla.rope.PeBlock(j).cast<float>() * qh);  // [R, D(+1)]
  }
  const float alpha = static_cast<float>(mla.alpha());
  MatrixRM kv_a = MatrixRM::Zero(r + rope, d);  // [r + R, D]
  kv_a.topRows(rf) = alpha * mla.w_down.transpose();
  kv_a.bottomRows(rope) =
      mla.rope.pe.cast<float>() * weights.w_k.transpose();  // [R, D]
  Tensor norm;
  norm.shape = {r};
  norm.data.assign(r, static_cast<float>(1.0 / mla.alpha()));
  MatrixRM kv_b = MatrixRM::Zero(num_heads * 2 * dh, r);  // [n_h·2·d_h, r]
  const float e = static_cast<float>(kLatentNormSqrtEps);
  // With biases, latent channel rf is the constant 1 (bias α, zero weights):
  // its kv_b_proj column adds the NoPE part of b_K and b_V.
  Eigen::VectorXf k_nope_bias, v_bias;
  if (bias) {
    const Eigen::VectorXd bk = weights.b_k->transpose().cast<double>();
    k_nope_bias = (bk - mla.rope.Projector() * bk).cast<float>();
    v_bias = weights.b_v->transpose();
  }
  for (int64_t h = 0; h < num_heads; ++h) {
    const int64_t j = h / group;
    auto k_rows = kv_b.middleRows(2 * h * dh, dh);
    auto v_rows = kv_b.middleRows(2 * h * dh + dh, dh);
    k_rows.leftCols(rf) = e * mla.up_k.middleCols(j * dh, dh).transpose();
    v_rows.leftCols(rf) = e * mla.up_v.middleCols(j * dh, dh).transpose();
    if (bias) {
      k_rows.col(rf) = e * k_nope_bias.segment(j * dh, dh);
      v_rows.col(rf) = e * v_bias.segment(j * dh, dh);
    }
  }
  AttentionTensors out;
  if (bias) {
    AddQueryLoraTensors(layer, q, mla.q_alpha_log2, out.tensors);
    Tensor b;
    b.shape = {r + rope};
    b.data.assign(r + rope, 0.0f);
    b.data[rf] = alpha;
    const Eigen::VectorXf pe_bias =
        (mla.rope.pe * weights.b_k->transpose().cast<double>()).cast<float>();
    for (int64_t i = 0; i < rope; ++i) b.data[r + i] = pe_bias(i);
    out.tensors[KvAProjBiasName(layer)] = std::move(b);
    Tensor o_bias;
    o_bias.shape = {d};
    o_bias.data.assign(d, 0.0f);  // overridden by the source's when it has one
    out.tensors[OProjBiasName(layer)] = std::move(o_bias);
  } else {
    out.tensors[io::names::QProj(layer)] = FromMatrix(q);
  }
  out.tensors[KvAProjName(layer)] = FromMatrix(kv_a);
  out.tensors[KvANormName(layer)] = std::move(norm);
  out.tensors[KvBProjName(layer)] = FromMatrix(kv_b);
  return out;
}

MlaTensorSource::MlaTensorSource(const TensorSource& source,
                                 const ModelConfig& config,
                                 const std::vector<MlaLayer>& layers)
    : source_(source), config_(config), layers_(layers) {
  for (int64_t l = 0; l < static_cast<int64_t>(layers.size()); ++l) {
    std::vector<std::string> computed = {KvAProjName(l), KvANormName(l),
                                         KvBProjName(l)};
    if (layers[l].bias_channel) {
      for (const std::string& n :
           {QAProjName(l), QAProjBiasName(l), QANormName(l), QBProjName(l),
            KvAProjBiasName(l)}) {
        computed.push_back(n);
      }
      // attention_bias also gives o_proj a bias: zero unless the source has
      // one (then it is copied).
      if (!source.Has(OProjBiasName(l))) computed.push_back(OProjBiasName(l));
      dropped_.insert(io::names::QProj(l));
    } else {
      computed.push_back(io::names::QProj(l));
    }
    for (const std::string& n : computed) computed_[n] = l;
    o_proj_[io::names::OProj(l)] = l;
    for (const std::string& n :
         {io::names::KProj(l), io::names::VProj(l), io::names::QBias(l),
          io::names::KBias(l), io::names::VBias(l), io::names::QNorm(l),
          io::names::KNorm(l)}) {
      dropped_.insert(n);
    }
  }
}

const MatrixRM* MlaTensorSource::RefitOProj(absl::string_view name) const {
  auto it = o_proj_.find(name);
  if (it == o_proj_.end() || layers_[it->second].o_proj.size() == 0) {
    return nullptr;
  }
  return &layers_[it->second].o_proj;
}

bool MlaTensorSource::IsComputed(absl::string_view name) const {
  return computed_.find(name) != computed_.end() || RefitOProj(name) != nullptr;
}

void MlaTensorSource::ReleaseCache() const {
  std::lock_guard<std::mutex> lock(mu_);
  cached_.reset();
  cached_layer_ = -1;
}

bool MlaTensorSource::Has(absl::string_view name) const {
  if (IsComputed(name)) return true;
  return dropped_.find(name) == dropped_.end() && source_.Has(name);
}

absl::StatusOr<std::vector<int64_t>> MlaTensorSource::Shape(
    absl::string_view name) const {
  auto it = computed_.find(name);
  if (it == computed_.end()) {
    if (dropped_.find(name) != dropped_.end()) {
      return absl::NotFoundError(
          absl::StrCat("tensor ", name, " is not part of the export"));
    }
    return source_.Shape(name);
  }
  const MlaLayer& m = layers_[it->second];
  const int64_t dh = m.rope.shape.head_dim, rope = m.rope.shape.rope_dim;
  const int64_t r = m.kv_lora_rank(), n_h = config_.num_attention_heads;
  const int64_t d = config_.hidden_size, l = it->second;
  if (name == io::names::QProj(l)) return {{n_h * (dh + rope), d}};
  if (name == KvAProjName(l)) return {{r + rope, d}};
  if (name == KvANormName(l)) return {{r}};
  if (name == KvBProjName(l)) return {{n_h * 2 * dh, r}};
  if (name == QAProjName(l)) return {{d + 1, d}};
  if (name == QAProjBiasName(l) || name == QANormName(l)) return {{d + 1}};
  if (name == QBProjName(l)) return {{n_h * (dh + rope), d + 1}};
  if (name == KvAProjBiasName(l)) return {{r + rope}};
  return {{d}};  // o_proj.bias
}

absl::StatusOr<std::shared_ptr<const AttentionTensors>> MlaTensorSource::Layer(
    int64_t layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (cached_layer_ == layer && cached_) return cached_;
  CARE_ASSIGN_OR_RETURN(Tensor q, source_.LoadF32(io::names::QProj(layer)));
  CARE_ASSIGN_OR_RETURN(LayerWeights w,
                        LoadLayerWeights(config_, source_, layer));
  std::optional<Tensor> q_bias;
  if (layers_[layer].bias_channel) {
    CARE_ASSIGN_OR_RETURN(q_bias, source_.LoadF32(io::names::QBias(layer)));
  }
  CARE_ASSIGN_OR_RETURN(AttentionTensors t,
                        BuildAttentionTensors(layer, layers_[layer], q, w,
                                              config_.num_attention_heads,
                                              q_bias ? &*q_bias : nullptr));
  cached_ = std::make_shared<const AttentionTensors>(std::move(t));
  cached_layer_ = layer;
  return cached_;
}

absl::StatusOr<Tensor> MlaTensorSource::LoadF32(absl::string_view name) const {
  auto it = computed_.find(name);
  if (const MatrixRM* o = RefitOProj(name)) return FromMatrix(*o);
  if (it == computed_.end()) {
    if (dropped_.find(name) != dropped_.end()) {
      return absl::NotFoundError(
          absl::StrCat("tensor ", name, " is not part of the export"));
    }
    return source_.LoadF32(name);
  }
  CARE_ASSIGN_OR_RETURN(auto layer, Layer(it->second));
  return layer->tensors.at(std::string(name));
}

std::string MlaTensorSource::Location(absl::string_view name) const {
  if (RefitOProj(name) != nullptr) {
    return absl::StrCat("o_proj refit of ", source_.Location(name));
  }
  if (IsComputed(name)) {
    return absl::StrCat(
        "deepseek-v3 export of ",
        source_.Location(io::names::KProj(computed_.find(name)->second)));
  }
  return source_.Location(name);
}

std::vector<std::string> MlaTensorSource::Names() const {
  std::vector<std::string> names;
  for (const std::string& n : source_.Names()) {
    if (dropped_.find(n) == dropped_.end() && !IsComputed(n)) {
      names.push_back(n);
    }
  }
  for (const auto& [n, l] : computed_) names.push_back(n);
  for (const auto& [n, l] : o_proj_) {
    if (RefitOProj(n) != nullptr) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace care::convert::mla
