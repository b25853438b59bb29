#include "care/convert/mla_export/heal_tensors.h"

#include <cmath>
#include <utility>

#include "base/status_macros.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {

absl::StatusOr<HealParams<float>> HealStart(int64_t layer, const MlaLayer& mla,
                                            const Tensor& q_proj,
                                            const LayerWeights& weights,
                                            int64_t num_heads) {
  if (mla.healed) return *mla.healed;
  CARE_ASSIGN_OR_RETURN(
      AttentionTensors t,
      BuildAttentionTensors(layer, mla, q_proj, weights, num_heads));
  const RopeSplitShape& rs = mla.rope.shape;
  const int64_t dh = rs.head_dim, rope = rs.rope_dim, r = mla.kv_lora_rank();
  const int64_t group = num_heads / rs.num_kv_heads;
  const MatrixRM q = t.tensors.at(io::names::QProj(layer)).matrix();
  const MatrixRM kv_a = t.tensors.at(KvAProjName(layer)).matrix();
  HealParams<float> p;
  p.q_nope.resize(num_heads * dh, q.cols());  // [n_h·d_h, D]
  p.q_pe.resize(num_heads * rope, q.cols());  // [n_h·R, D]
  p.up_k.resize(r, num_heads * dh);           // [r, n_h·d_h]
  p.up_v.resize(r, num_heads * dh);
  for (int64_t h = 0; h < num_heads; ++h) {
    const int64_t j = h / group;
    p.q_nope.middleRows(h * dh, dh) = q.middleRows(h * (dh + rope), dh);
    p.q_pe.middleRows(h * rope, rope) =
        q.middleRows(h * (dh + rope) + dh, rope);
    p.up_k.middleCols(h * dh, dh) = mla.up_k.middleCols(j * dh, dh);
    p.up_v.middleCols(h * dh, dh) = mla.up_v.middleCols(j * dh, dh);
  }
  p.w_down = mla.w_down;           // [D, r]
  p.w_pe = kv_a.bottomRows(rope);  // [R, D]
  return p;
}

AttentionTensors HealedTensors(int64_t layer, const HealParams<float>& p,
                               int64_t num_heads, int alpha_log2) {
  const int64_t dh = p.q_nope.rows() / num_heads;
  const int64_t rope = p.w_pe.rows(), r = p.w_down.cols();
  const int64_t d = p.q_nope.cols();
  const float alpha = static_cast<float>(std::ldexp(1.0, -alpha_log2));
  MatrixRM q(num_heads * (dh + rope), d);  // [n_h·(d_h + R), D]
  MatrixRM kv_b(num_heads * 2 * dh, r);    // [n_h·2·d_h, r]
  const float e = static_cast<float>(kLatentNormSqrtEps);
  for (int64_t h = 0; h < num_heads; ++h) {
    q.middleRows(h * (dh + rope), dh) = p.q_nope.middleRows(h * dh, dh);
    q.middleRows(h * (dh + rope) + dh, rope) =
        p.q_pe.middleRows(h * rope, rope);
    kv_b.middleRows(2 * h * dh, dh) =
        e * p.up_k.middleCols(h * dh, dh).transpose();
    kv_b.middleRows(2 * h * dh + dh, dh) =
        e * p.up_v.middleCols(h * dh, dh).transpose();
  }
  MatrixRM kv_a(r + rope, d);  // [r + R, D]
  kv_a.topRows(r) = alpha * p.w_down.transpose();
  kv_a.bottomRows(rope) = p.w_pe;
  Tensor norm;
  norm.shape = {r};
  norm.data.assign(r, 1.0f / alpha);
  AttentionTensors out;
  out.tensors[io::names::QProj(layer)] = FromMatrix(q);
  out.tensors[KvAProjName(layer)] = FromMatrix(kv_a);
  out.tensors[KvANormName(layer)] = std::move(norm);
  out.tensors[KvBProjName(layer)] = FromMatrix(kv_b);
  return out;
}

}  // namespace care::convert::mla
