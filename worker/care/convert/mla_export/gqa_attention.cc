#include "care/convert/mla_export/gqa_attention.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/mla_export/causal_softmax.h"
#include "care/engine/rope.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

template <typename S>
absl::StatusOr<HealMatrix<S>> Load(const TensorSource& weights,
                                   const std::string& name, int64_t rows,
                                   int64_t cols) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(weights, name, {rows, cols}));
  return t.matrix().cast<S>();
}

// Per-head RMSNorm of `heads` blocks of d_h columns in place.
template <typename S>
void HeadNorm(const Eigen::Matrix<S, 1, Eigen::Dynamic>& w, double eps,
              int64_t heads, HealMatrix<S>& m) {
  const int64_t dh = w.size();
  for (int64_t row = 0; row < m.rows(); ++row) {
    for (int64_t h = 0; h < heads; ++h) {
      auto b = m.row(row).segment(h * dh, dh);
      const S inv = S(1) / std::sqrt(b.squaredNorm() / S(dh) + S(eps));
      b = (b * inv).cwiseProduct(w);
    }
  }
}

// HF half-split RoPE on `heads` blocks of d_h columns (pairs f, f + d_h/2).
template <typename S>
void Rotate(const std::vector<double>& inv_freq, double factor, int64_t seq_len,
            int64_t heads, int64_t dh, HealMatrix<S>& m) {
  const int64_t half = dh / 2;
  for (int64_t row = 0; row < m.rows(); ++row) {
    const double pos = static_cast<double>(row % seq_len);
    for (int64_t f = 0; f < half; ++f) {
      const S c = static_cast<S>(std::cos(pos * inv_freq[f]) * factor);
      const S s = static_cast<S>(std::sin(pos * inv_freq[f]) * factor);
      for (int64_t h = 0; h < heads; ++h) {
        S& u = m(row, h * dh + f);
        S& v = m(row, h * dh + f + half);
        const S u0 = u, v0 = v;
        u = u0 * c - v0 * s;
        v = v0 * c + u0 * s;
      }
    }
  }
}

}  // namespace

template <typename S>
absl::StatusOr<GqaAttention<S>> LoadGqaAttention(const ModelConfig& config,
                                                 const TensorSource& weights,
                                                 int64_t layer) {
  GqaAttention<S> a;
  a.num_heads = config.num_attention_heads;
  a.num_kv_heads = config.num_key_value_heads;
  a.head_dim = config.head_dim;
  const int64_t d = config.hidden_size, dh = a.head_dim;
  CARE_ASSIGN_OR_RETURN(const engine::RopeFrequencies freqs,
                        engine::ComputeRopeFrequencies(config));
  if (freqs.rotary_dim != dh) {
    return absl::InvalidArgumentError(absl::StrCat(
        "healing: layer ", layer, " rotates ", freqs.rotary_dim, " of ", dh,
        " head dims; only fully rotated heads are supported"));
  }
  a.inv_freq = freqs.inv_freq;
  a.attention_factor = freqs.attention_factor;
  CARE_ASSIGN_OR_RETURN(
      a.w_q, Load<S>(weights, io::names::QProj(layer), a.num_heads * dh, d));
  CARE_ASSIGN_OR_RETURN(
      a.w_k, Load<S>(weights, io::names::KProj(layer), a.num_kv_heads * dh, d));
  CARE_ASSIGN_OR_RETURN(
      a.w_v, Load<S>(weights, io::names::VProj(layer), a.num_kv_heads * dh, d));
  CARE_ASSIGN_OR_RETURN(
      a.w_o, Load<S>(weights, io::names::OProj(layer), d, a.num_heads * dh));
  if (config.qk_norm) {
    // Per-head norm weights, [d_h].
    CARE_ASSIGN_OR_RETURN(Tensor qn,
                          LoadChecked(weights, io::names::QNorm(layer), {dh}));
    CARE_ASSIGN_OR_RETURN(Tensor kn,
                          LoadChecked(weights, io::names::KNorm(layer), {dh}));
    a.q_norm =
        Eigen::Map<const Eigen::RowVectorXf>(qn.data.data(), dh).cast<S>();
    a.k_norm =
        Eigen::Map<const Eigen::RowVectorXf>(kn.data.data(), dh).cast<S>();
    a.norm_eps = config.rms_norm_eps;
  }
  return a;
}

template <typename S>
absl::StatusOr<HealMatrix<S>> GqaAttentionOutput(
    const GqaAttention<S>& a, int64_t seq_len,
    const Eigen::Ref<const HealMatrix<S>>& x) {
  using M = HealMatrix<S>;
  const int64_t n_h = a.num_heads, g = a.num_kv_heads, dh = a.head_dim;
  if (seq_len < 1 || x.rows() % seq_len != 0 || x.cols() != a.w_q.cols() ||
      g < 1 || n_h % g != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("healing target: inputs [", x.rows(), ", ", x.cols(),
                     "] are not whole windows of ", seq_len,
                     " tokens of width ", a.w_q.cols()));
  }
  M q = x * a.w_q.transpose();  // [N, n_h·d_h]
  M k = x * a.w_k.transpose();  // [N, g·d_h]
  const M v = x * a.w_v.transpose();
  if (a.q_norm.size() == dh) HeadNorm(a.q_norm, a.norm_eps, n_h, q);
  if (a.k_norm.size() == dh) HeadNorm(a.k_norm, a.norm_eps, g, k);
  Rotate(a.inv_freq, a.attention_factor, seq_len, n_h, dh, q);
  Rotate(a.inv_freq, a.attention_factor, seq_len, g, dh, k);
  const S scale = S(1) / std::sqrt(static_cast<S>(dh));
  const int64_t group = n_h / g;
  M o(x.rows(), n_h * dh);  // [N, n_h·d_h]
  for (int64_t r0 = 0; r0 < x.rows(); r0 += seq_len) {
    for (int64_t h = 0; h < n_h; ++h) {
      const int64_t j = h / group;
      M s = scale * q.block(r0, h * dh, seq_len, dh) *
            k.block(r0, j * dh, seq_len, dh).transpose();  // [T, T]
      CausalSoftmax(s);
      o.block(r0, h * dh, seq_len, dh).noalias() =
          s * v.block(r0, j * dh, seq_len, dh);
    }
  }
  return M(o * a.w_o.transpose());  // [N, D]
}

template struct GqaAttention<float>;
template struct GqaAttention<double>;
template absl::StatusOr<GqaAttention<float>> LoadGqaAttention<float>(
    const ModelConfig&, const TensorSource&, int64_t);
template absl::StatusOr<GqaAttention<double>> LoadGqaAttention<double>(
    const ModelConfig&, const TensorSource&, int64_t);
template absl::StatusOr<HealMatrix<float>> GqaAttentionOutput<float>(
    const GqaAttention<float>&, int64_t,
    const Eigen::Ref<const HealMatrix<float>>&);
template absl::StatusOr<HealMatrix<double>> GqaAttentionOutput<double>(
    const GqaAttention<double>&, int64_t,
    const Eigen::Ref<const HealMatrix<double>>&);

}  // namespace care::convert::mla
