// Qwen2's q/k/v biases in the DeepSeek-V3 export (method.md §5), carried
// exactly:
//   k_pe   bias pe·b_K on the rope rows of kv_a_proj_with_mqa;
//   k_nope, v biases through one more latent channel: a row of
//          kv_a_proj_with_mqa with zero weights and bias α is α before
//          kv_a_layernorm, a constant 1 after it (linear regime), and that
//          channel's kv_b_proj column holds ((I − Π)·b_K)[j] and b_V[j];
//   q bias through the q_lora path (attention_bias gives q_a_proj a bias,
//          never q_proj): q_a_proj = α_q·[I_D; 0] with bias α_q on the
//          extra row, q_a_layernorm 1/α_q, q_b_proj = sqrt(eps)·[W | b]
//          where [W | b] are the q_proj rows the export writes without
//          biases, the transformed bias as the last column.
// Cost: one latent dimension per token (counted in kv_lora_rank) and a
// q_lora_rank of D + 1 (more query FLOPs, nothing cached).
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_BIAS_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_BIAS_H_

#include <Eigen/Core>
#include <map>
#include <string>

#include "care/convert/latent_layer.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

struct MlaLayer;

// The pre-RoPE keys' second moment E[k·kᵀ] [g·d_h, g·d_h] for
// k = W_Kᵀ·x (+ b_K): W_Kᵀ·C·W_K, plus W_Kᵀ·μ·b_Kᵀ + b_K·μᵀ·W_K + b_K·b_Kᵀ
// when the layer has a k bias and `mean` (μ, [D]) is given. Qwen2's k
// biases are large: the rope split must see them.
Eigen::MatrixXd KeyGram(const LayerWeights& weights,
                        const Eigen::MatrixXd& covariance,
                        const Eigen::VectorXd& mean);

// Turns on the layer's bias channel: α is re-chosen with the constant in
// the latent's energy, α_q for the q_lora path from the inputs' energy
// (tr(C) + 1) / (D + 1); `covariance` is the calibration C [D, D].
void AddBiasChannel(const Eigen::MatrixXd& covariance, double target,
                    MlaLayer& layer);

// The written names of the q_lora path and of the biases of a layer.
std::string QAProjName(int64_t layer);
std::string QAProjBiasName(int64_t layer);
std::string QANormName(int64_t layer);
std::string QBProjName(int64_t layer);
std::string KvAProjBiasName(int64_t layer);
std::string OProjBiasName(int64_t layer);

// The q_lora path computing q = q_rows·[x; 1] (q_rows [n_h·(d_h + R),
// D + 1]) with α_q = 2^-q_alpha_log2; adds the four tensors to `out`.
void AddQueryLoraTensors(int64_t layer, const MatrixRM& q_rows,
                         int q_alpha_log2, std::map<std::string, Tensor>& out);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_BIAS_H_
