#include "care/convert/mla_export/mla_bias.h"

#include <cmath>
#include <map>
#include <utility>

#include "care/convert/mla_export/mla_layer.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {
namespace {

Tensor Filled(int64_t n, float value) {
  Tensor t;
  t.shape = {n};
  t.data.assign(n, value);
  return t;
}

}  // namespace

Eigen::MatrixXd KeyGram(const LayerWeights& weights,
                        const Eigen::MatrixXd& covariance,
                        const Eigen::VectorXd& mean) {
  const Eigen::MatrixXd wk = weights.w_k.cast<double>();  // [D, g·d_h]
  Eigen::MatrixXd gram = wk.transpose() * covariance * wk;
  if (weights.b_k && mean.size() == wk.rows()) {
    const Eigen::VectorXd b = weights.b_k->transpose().cast<double>();
    const Eigen::VectorXd m = wk.transpose() * mean;  // E[W_Kᵀx], [g·d_h]
    gram += m * b.transpose() + b * m.transpose() + b * b.transpose();
  }
  return gram;
}

void AddBiasChannel(const Eigen::MatrixXd& covariance, double target,
                    MlaLayer& layer) {
  const double r = static_cast<double>(layer.fitted_rank());
  // E[mean(c²)] with the constant channel: (r·E_r + 1) / (r + 1), where
  // E_r = α²-free energy per fitted channel the first choice used.
  const Eigen::MatrixXd down = layer.w_down.cast<double>();
  const double fitted = (down.transpose() * covariance * down).trace();
  const double energy = (fitted + 1) / (r + 1);
  layer.bias_channel = true;
  layer.alpha_log2 = NormAlphaLog2(energy, target);
  const double a = layer.alpha();
  layer.norm_error_mean =
      a * a * energy / (2 * kLatentNormSqrtEps * kLatentNormSqrtEps);
  const double d = static_cast<double>(covariance.rows());
  layer.q_alpha_log2 =
      NormAlphaLog2((covariance.trace() + 1) / (d + 1), target);
}

std::string QAProjName(int64_t l) {
  return io::names::Layer(l, "self_attn.q_a_proj.weight");
}
std::string QAProjBiasName(int64_t l) {
  return io::names::Layer(l, "self_attn.q_a_proj.bias");
}
std::string QANormName(int64_t l) {
  return io::names::Layer(l, "self_attn.q_a_layernorm.weight");
}
std::string QBProjName(int64_t l) {
  return io::names::Layer(l, "self_attn.q_b_proj.weight");
}
std::string KvAProjBiasName(int64_t l) {
  return io::names::Layer(l, "self_attn.kv_a_proj_with_mqa.bias");
}
std::string OProjBiasName(int64_t l) {
  return io::names::Layer(l, "self_attn.o_proj.bias");
}

void AddQueryLoraTensors(int64_t layer, const MatrixRM& q_rows,
                         int q_alpha_log2, std::map<std::string, Tensor>& out) {
  const int64_t d = q_rows.cols() - 1;  // D; the last column is the bias
  const float alpha = static_cast<float>(std::ldexp(1.0, -q_alpha_log2));
  // [D + 1, D]: α_q·x, then a zero row whose bias α_q becomes the constant.
  MatrixRM q_a = MatrixRM::Zero(d + 1, d);
  q_a.topRows(d).diagonal().setConstant(alpha);
  Tensor bias = Filled(d + 1, 0.0f);
  bias.data[d] = alpha;
  // q_a_layernorm (linear regime) outputs [x; 1]/sqrt(eps)·α_q·(1/α_q).
  out[QAProjName(layer)] = FromMatrix(q_a);
  out[QAProjBiasName(layer)] = std::move(bias);
  out[QANormName(layer)] = Filled(d + 1, 1.0f / alpha);
  out[QBProjName(layer)] =
      FromMatrix(static_cast<float>(kLatentNormSqrtEps) * q_rows);
}

}  // namespace care::convert::mla
