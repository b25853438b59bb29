// The K/V projection of one attention layer, as a replaceable object: the
// engine asks a KvProjector for K and V of every token and applies k_norm
// (Qwen3) and RoPE afterwards, so a converted (latent) attention plugs in
// without touching the rest of the layer.
#ifndef CARE_ENGINE_KV_PROJECTOR_H_
#define CARE_ENGINE_KV_PROJECTOR_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

class KvProjector {
 public:
  virtual ~KvProjector() = default;
  // x: [tokens, D], the post-input_layernorm hidden states of all windows.
  // Resizes and fills k, v: [tokens, g * d_h], before k_norm and RoPE.
  virtual absl::Status Project(const MatrixRM& x, MatrixRM* k,
                               MatrixRM* v) const = 0;
};

// The original GQA projection: K = x·W_Kᵀ (+ b_K), V = x·W_Vᵀ (+ b_V), with
// W in the HF [out, in] = [g * d_h, D] layout.
class DenseKvProjector : public KvProjector {
 public:
  DenseKvProjector(MatrixRM w_k, MatrixRM w_v,
                   std::optional<Eigen::RowVectorXf> b_k = std::nullopt,
                   std::optional<Eigen::RowVectorXf> b_v = std::nullopt);
  absl::Status Project(const MatrixRM& x, MatrixRM* k,
                       MatrixRM* v) const override;

 private:
  MatrixRM w_k_, w_v_;                           // [g * d_h, D]
  std::optional<Eigen::RowVectorXf> b_k_, b_v_;  // [g * d_h]
};

// The CARE latent projection (method.md §4): c_K = x·A_Kᵀ (the cached latent,
// r_K wide), K = c_K·B_Kᵀ (+ b_K); the same for V. A is the HF-layout
// k_a_proj [r, D], B is k_b_proj [g * d_h, r]; the optional bias folds the
// original k_proj/v_proj bias.
class LatentKvProjector : public KvProjector {
 public:
  LatentKvProjector(MatrixRM a_k, MatrixRM b_k, MatrixRM a_v, MatrixRM b_v,
                    std::optional<Eigen::RowVectorXf> bias_k = std::nullopt,
                    std::optional<Eigen::RowVectorXf> bias_v = std::nullopt);
  absl::Status Project(const MatrixRM& x, MatrixRM* k,
                       MatrixRM* v) const override;

  int64_t rank_k() const { return a_k_.rows(); }
  int64_t rank_v() const { return a_v_.rows(); }

 private:
  MatrixRM a_k_, b_k_, a_v_, b_v_;
  std::optional<Eigen::RowVectorXf> bias_k_, bias_v_;
};

// The projector a checkpoint defines for `layer`: latent when config.latent
// is set (tensors self_attn.{k,v}_{a,b}_proj.weight, optional
// {k,v}_b_proj.bias), dense otherwise (self_attn.{k,v}_proj.weight, and
// .bias when config.attention_bias). Shapes are checked; errors name the
// tensor, the layer and the file.
absl::StatusOr<std::unique_ptr<KvProjector>> LoadKvProjector(
    const ModelConfig& config, const TensorSource& source, int64_t layer);

}  // namespace care::engine

#endif  // CARE_ENGINE_KV_PROJECTOR_H_
