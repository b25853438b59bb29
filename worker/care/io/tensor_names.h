// Hugging Face tensor names for the supported families (Llama, Mistral,
// Qwen2/3, Qwen3-MoE) and for CARE latent checkpoints. The engine, the
// converter and the checkpoint checks all use these, so names agree.
#ifndef CARE_IO_TENSOR_NAMES_H_
#define CARE_IO_TENSOR_NAMES_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace care::io::names {

inline std::string Embed() { return "model.embed_tokens.weight"; }
inline std::string FinalNorm() { return "model.norm.weight"; }
inline std::string LmHead() { return "lm_head.weight"; }

// "model.layers.{l}.{suffix}".
inline std::string Layer(int64_t l, absl::string_view suffix) {
  return absl::StrCat("model.layers.", l, ".", suffix);
}

inline std::string InputNorm(int64_t l) {
  return Layer(l, "input_layernorm.weight");
}
inline std::string PostAttentionNorm(int64_t l) {
  return Layer(l, "post_attention_layernorm.weight");
}

// Attention: [n_h*d_h, D], [g*d_h, D], [g*d_h, D], [D, n_h*d_h].
inline std::string QProj(int64_t l) {
  return Layer(l, "self_attn.q_proj.weight");
}
inline std::string KProj(int64_t l) {
  return Layer(l, "self_attn.k_proj.weight");
}
inline std::string VProj(int64_t l) {
  return Layer(l, "self_attn.v_proj.weight");
}
inline std::string OProj(int64_t l) {
  return Layer(l, "self_attn.o_proj.weight");
}
// attention_bias / qwen2: [n_h*d_h], [g*d_h], [g*d_h].
inline std::string QBias(int64_t l) {
  return Layer(l, "self_attn.q_proj.bias");
}
inline std::string KBias(int64_t l) {
  return Layer(l, "self_attn.k_proj.bias");
}
inline std::string VBias(int64_t l) {
  return Layer(l, "self_attn.v_proj.bias");
}
// qwen3: per-head RMSNorm weights [d_h].
inline std::string QNorm(int64_t l) {
  return Layer(l, "self_attn.q_norm.weight");
}
inline std::string KNorm(int64_t l) {
  return Layer(l, "self_attn.k_norm.weight");
}

// CARE latent attention (replaces k_proj / v_proj):
// k_a_proj [r_K, D] (x -> c_K), k_b_proj [g*d_h, r_K] (c_K -> K);
// likewise v. With attention_bias the K/V biases move to the up-projections:
// k_b_proj.bias / v_b_proj.bias [g*d_h].
inline std::string KAProj(int64_t l) {
  return Layer(l, "self_attn.k_a_proj.weight");
}
inline std::string KBProj(int64_t l) {
  return Layer(l, "self_attn.k_b_proj.weight");
}
inline std::string VAProj(int64_t l) {
  return Layer(l, "self_attn.v_a_proj.weight");
}
inline std::string VBProj(int64_t l) {
  return Layer(l, "self_attn.v_b_proj.weight");
}
inline std::string KBBias(int64_t l) {
  return Layer(l, "self_attn.k_b_proj.bias");
}
inline std::string VBBias(int64_t l) {
  return Layer(l, "self_attn.v_b_proj.bias");
}

// Dense MLP: gate/up [I, D], down [D, I].
inline std::string GateProj(int64_t l) {
  return Layer(l, "mlp.gate_proj.weight");
}
inline std::string UpProj(int64_t l) { return Layer(l, "mlp.up_proj.weight"); }
inline std::string DownProj(int64_t l) {
  return Layer(l, "mlp.down_proj.weight");
}

// MoE (qwen3_moe): router [E, D]; expert e gate/up [I_moe, D], down [D, I_moe].
inline std::string Router(int64_t l) { return Layer(l, "mlp.gate.weight"); }
inline std::string ExpertGate(int64_t l, int64_t e) {
  return Layer(l, absl::StrCat("mlp.experts.", e, ".gate_proj.weight"));
}
inline std::string ExpertUp(int64_t l, int64_t e) {
  return Layer(l, absl::StrCat("mlp.experts.", e, ".up_proj.weight"));
}
inline std::string ExpertDown(int64_t l, int64_t e) {
  return Layer(l, absl::StrCat("mlp.experts.", e, ".down_proj.weight"));
}

}  // namespace care::io::names

#endif  // CARE_IO_TENSOR_NAMES_H_
