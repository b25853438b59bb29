#include "care/convert/mla_export/mla_tensors.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/convert/mla_export/nope_correction.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

Tensor FromMatrix(const MatrixRM& m) {
  Tensor t;
  t.shape = {m.rows(), m.cols()};
  t.data.assign(m.data(), m.data() + m.size());
  return t;
}

}  // namespace

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
    const LayerWeights& source_weights, int64_t num_heads) {
  if (mla.healed) {
    return HealedTensors(layer, *mla.healed, num_heads, mla.alpha_log2);
  }
  const LayerWeights weights = FoldedWeights(source_weights, mla);
  const RopeSplitShape& rs = mla.rope.shape;
  const int64_t dh = rs.head_dim, rope = rs.rope_dim, g = rs.num_kv_heads;
  const int64_t d = weights.w_k.rows(), r = mla.kv_lora_rank();
  if (q_proj.shape != std::vector<int64_t>{num_heads * dh, d}) {
    return absl::InvalidArgumentError(
        absl::StrCat(io::names::QProj(layer), " is ", ShapeString(q_proj.shape),
                     ", expected [", num_heads * dh, ", ", d, "]"));
  }
  const int64_t group = num_heads / g;  // query heads per KV head
  const float s = static_cast<float>(mla.q_scale);
  MatrixRM wq = q_proj.matrix();  // [n_h·d_h, D]
  if (mla.q_fold.size() == wq.rows()) wq = mla.q_fold.asDiagonal() * wq;

  MatrixRM q(num_heads * (dh + rope), d);  // [n_h·(d_h + R), D]
  for (int64_t h = 0; h < num_heads; ++h) {
    const int64_t j = h / group;
    const auto qh = wq.middleRows(h * dh, dh);  // [d_h, D]
    MatrixRM q_nope = qh;
    if (!mla.nope_correction.empty()) {
      NopeCorrection c;
      c.m = mla.nope_correction;
      CorrectQueryRows(c, h, dh, q_nope);
    }
    q.middleRows(h * (dh + rope), dh) = s * q_nope;
    q.middleRows(h * (dh + rope) + dh, rope) =
        s * (mla.rope.PeBlock(j).cast<float>() * qh);  // [R, D]
  }
  MatrixRM kv_a(r + rope, d);  // [r + R, D]
  kv_a.topRows(r) = static_cast<float>(mla.alpha()) * mla.w_down.transpose();
  kv_a.bottomRows(rope) =
      mla.rope.pe.cast<float>() * weights.w_k.transpose();  // [R, D]
  Tensor norm;
  norm.shape = {r};
  norm.data.assign(r, static_cast<float>(1.0 / mla.alpha()));
  MatrixRM kv_b(num_heads * 2 * dh, r);  // [n_h·2·d_h, r]
  const float e = static_cast<float>(kLatentNormSqrtEps);
  for (int64_t h = 0; h < num_heads; ++h) {
    const int64_t j = h / group;
    kv_b.middleRows(2 * h * dh, dh) =
        e * mla.up_k.middleCols(j * dh, dh).transpose();
    kv_b.middleRows(2 * h * dh + dh, dh) =
        e * mla.up_v.middleCols(j * dh, dh).transpose();
  }
  AttentionTensors out;
  out.tensors[io::names::QProj(layer)] = FromMatrix(q);
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
    for (const std::string& n : {io::names::QProj(l), KvAProjName(l),
                                 KvANormName(l), KvBProjName(l)}) {
      computed_[n] = l;
    }
    for (const std::string& n :
         {io::names::KProj(l), io::names::VProj(l), io::names::KBias(l),
          io::names::VBias(l), io::names::QNorm(l), io::names::KNorm(l)}) {
      dropped_.insert(n);
    }
  }
}

bool MlaTensorSource::IsComputed(absl::string_view name) const {
  return computed_.find(name) != computed_.end();
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
  const int64_t d = config_.hidden_size;
  if (name == io::names::QProj(it->second)) return {{n_h * (dh + rope), d}};
  if (name == KvAProjName(it->second)) return {{r + rope, d}};
  if (name == KvANormName(it->second)) return {{r}};
  return {{n_h * 2 * dh, r}};
}

absl::StatusOr<std::shared_ptr<const AttentionTensors>> MlaTensorSource::Layer(
    int64_t layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (cached_layer_ == layer && cached_) return cached_;
  CARE_ASSIGN_OR_RETURN(Tensor q, source_.LoadF32(io::names::QProj(layer)));
  CARE_ASSIGN_OR_RETURN(LayerWeights w,
                        LoadLayerWeights(config_, source_, layer));
  CARE_ASSIGN_OR_RETURN(AttentionTensors t,
                        BuildAttentionTensors(layer, layers_[layer], q, w,
                                              config_.num_attention_heads));
  cached_ = std::make_shared<const AttentionTensors>(std::move(t));
  cached_layer_ = layer;
  return cached_;
}

absl::StatusOr<Tensor> MlaTensorSource::LoadF32(absl::string_view name) const {
  auto it = computed_.find(name);
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
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace care::convert::mla
