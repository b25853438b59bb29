// One attention layer's K/V projections, decomposed once (full spectra) and
// then truncated at whatever ranks the allocator picks; the truncated factors
// become the engine's LatentKvProjector and the written k/v_{a,b}_proj
// tensors (docs/checkpoint-format.md).
#ifndef CARE_CONVERT_LATENT_LAYER_H_
#define CARE_CONVERT_LATENT_LAYER_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "care/convert/factorize.h"
#include "care/engine/kv_projector.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert {

// The original projections of one layer, activations-as-rows layout.
struct LayerWeights {
  MatrixRM w_k;                                // [D, g·d_h] = k_proj.weightᵀ
  MatrixRM w_v;                                // [D, g·d_h] = v_proj.weightᵀ
  std::optional<Eigen::RowVectorXf> b_k, b_v;  // [g·d_h] with attention_bias
};

// Reads k_proj / v_proj (and biases when config.attention_bias) of `layer`;
// errors name the tensor and file.
absl::StatusOr<LayerWeights> LoadLayerWeights(const ModelConfig& config,
                                              const TensorSource& source,
                                              int64_t layer);

struct LayerDecomposition {
  LayerWeights weights;
  Decomposition k, v;
  ScalingInfo scaling;  // shared by K and V (same input X)
};

// BuildScaling + Decompose for K and V. When the caller already has the
// undamped Grams WᵀCW of K and V (calib_gram_k/_v, [g·d_h, g·d_h], from the
// same covariance) and GramRouteApplies(options), the spectra come from
// WᵀCW + δ·WᵀW instead (the same matrices as (S·W)ᵀ(S·W) up to rounding,
// without S): no [D, D] factorization and no S·W product.
absl::StatusOr<LayerDecomposition> DecomposeLayer(
    LayerWeights weights, const LayerStatistics& stats,
    const FactorizeOptions& options,
    const Eigen::MatrixXd* calib_gram_k = nullptr,
    const Eigen::MatrixXd* calib_gram_v = nullptr);

// The rank-(r_K, r_V) factors of one layer.
struct LatentLayer {
  Factors k, v;
  std::optional<Eigen::RowVectorXf> b_k, b_v;  // folded into k/v_b_proj.bias

  // HF layouts: k_a_proj [r_K, D] = W_downᵀ, k_b_proj [g·d_h, r_K] = W_upᵀ.
  MatrixRM KA() const { return k.w_down.transpose(); }
  MatrixRM KB() const { return k.w_up.transpose(); }
  MatrixRM VA() const { return v.w_down.transpose(); }
  MatrixRM VB() const { return v.w_up.transpose(); }
  std::unique_ptr<engine::KvProjector> MakeProjector() const;
};

// The rank-(r_K, r_V) factors from `layer` and the original projections
// `weights` (LoadLayerWeights): the pipeline drops each layer's weights after
// its decomposition and re-reads them here, so no layer's W_K, W_V stay in
// memory between calibration and allocation (docs/scale.md).
absl::StatusOr<LatentLayer> TruncateLayer(const LayerDecomposition& layer,
                                          const LayerWeights& weights,
                                          int64_t rank_k, int64_t rank_v);
// The same with the weights the decomposition still holds.
absl::StatusOr<LatentLayer> TruncateLayer(const LayerDecomposition& layer,
                                          int64_t rank_k, int64_t rank_v);

}  // namespace care::convert

#endif  // CARE_CONVERT_LATENT_LAYER_H_
