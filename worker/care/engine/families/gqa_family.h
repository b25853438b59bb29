// The Llama-shaped decoder most families share: pre-norm grouped-query
// attention (q/k/v projections, optional q/k/v biases, optional o_proj bias,
// optional per-head q/k RMSNorm, RoPE) and a SwiGLU MLP, or, after
// conversion, the same with CARE latent K/V (docs/checkpoint-format.md).
// A family of this shape (llama.cc, qwen3.cc, ...) is a GqaFamily with its
// GqaTraits: model_type, biases, q/k norms, head_dim default, sliding
// window. One with a different MLP derives from it and overrides the MLP
// hooks (qwen3_moe.cc). A family whose attention is not of this shape
// derives from DecoderFamily directly.
#ifndef CARE_ENGINE_FAMILIES_GQA_FAMILY_H_
#define CARE_ENGINE_FAMILIES_GQA_FAMILY_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"
#include "care/engine/decoder_family.h"

namespace care::engine {

// What Llama-shaped families differ in (transformers' config classes).
struct GqaTraits {
  absl::string_view model_type;
  // head_dim when config.json has none; nullopt: hidden / heads.
  std::optional<int64_t> default_head_dim;
  enum class Bias {
    kFromConfig,  // attention_bias, default false (Llama, Qwen3)
    kAlways,      // q/k/v biases whatever the config says (Qwen2)
    kNever,       // no attention_bias field (Mistral)
  };
  Bias qkv_bias = Bias::kFromConfig;
  // o_proj.bias together with the q/k/v biases (false: never, Qwen2).
  bool o_proj_bias_with_qkv = true;
  bool qk_norm = false;  // per-head RMSNorm of q and k (Qwen3)
  // Reads sliding_window (Mistral); the engine refuses longer windows.
  bool sliding_window = false;
};

class GqaFamily : public DecoderFamily {
 public:
  explicit GqaFamily(GqaTraits traits) : traits_(traits) {}

  absl::string_view model_type() const override { return traits_.model_type; }
  std::optional<int64_t> default_head_dim() const override {
    return traits_.default_head_dim;
  }
  // The traits' fields: attention_bias, o_proj_bias, qk_norm,
  // sliding_window.
  absl::Status ParseFields(const ConfigReader& reader,
                           ModelConfig& config) const override;
  // Norms, attention (or latent attention), biases, q/k norms, then
  // AppendMlpTensors.
  void AppendLayerTensors(const ModelConfig& config, int64_t layer,
                          std::vector<io::ExpectedTensor>& out) const override;
  // K and V must be GQA/MHA projections: num_key_value_heads >= 1 dividing
  // num_attention_heads.
  absl::Status CheckConvertible(const ModelConfig& config) const override;
  // The attention block, then RunMlp.
  absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                        compute::Matrix* hidden) const override;
  // q/o (and k/v unless latent) projections; the dense MLP's unless
  // IsMoeLayer.
  std::vector<WeightRequest> LayerWeightRequests(const ModelConfig& config,
                                                 int64_t layer) const override;

 protected:
  // The MLP half: dense SwiGLU (mlp.{gate,up,down}_proj) by default.
  virtual void AppendMlpTensors(const ModelConfig& config, int64_t layer,
                                std::vector<io::ExpectedTensor>& out) const;
  virtual absl::Status RunMlp(const LayerContext& ctx, int64_t layer,
                              compute::Matrix* hidden) const;

 private:
  GqaTraits traits_;
};

}  // namespace care::engine

#endif  // CARE_ENGINE_FAMILIES_GQA_FAMILY_H_
