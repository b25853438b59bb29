// The K/V projection of one attention layer, as a replaceable object: the
// engine asks a KvProjector for K and V of every token and applies k_norm
// (Qwen3) and RoPE afterwards, so a converted (latent) attention plugs in
// without touching the rest of the layer.
#ifndef CARE_ENGINE_KV_PROJECTOR_H_
#define CARE_ENGINE_KV_PROJECTOR_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/weight_loader.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

class KvProjector {
 public:
  virtual ~KvProjector() = default;
  // x: [tokens, D], the post-input_layernorm hidden states of all windows,
  // on `backend`. Allocates and fills k, v: [tokens, g * d_h] on the same
  // backend, before k_norm and RoPE.
  virtual absl::Status Project(compute::Backend& backend,
                               const compute::Matrix& x, compute::Matrix* k,
                               compute::Matrix* v) const = 0;
  // The same for x = rows [row0, row0 + x.rows) of the pass's tokens (the
  // engine projects groups of windows); what the engine calls. Only a
  // projector whose rows differ (SplitKvProjector) looks at row0.
  virtual absl::Status ProjectRows(compute::Backend& backend,
                                   const compute::Matrix& x, int64_t /*row0*/,
                                   compute::Matrix* k,
                                   compute::Matrix* v) const {
    return Project(backend, x, k, v);
  }
};

// Two models that differ only in their K/V projections, side by side in one
// pass (EvaluatePerplexityPair): token rows below `split_row` are projected
// by `first`, the others by `second` (which sees them renumbered from 0).
class SplitKvProjector : public KvProjector {
 public:
  SplitKvProjector(std::unique_ptr<KvProjector> first,
                   std::unique_ptr<KvProjector> second, int64_t split_row);
  absl::Status Project(compute::Backend& backend, const compute::Matrix& x,
                       compute::Matrix* k, compute::Matrix* v) const override;
  absl::Status ProjectRows(compute::Backend& backend, const compute::Matrix& x,
                           int64_t row0, compute::Matrix* k,
                           compute::Matrix* v) const override;

 private:
  std::unique_ptr<KvProjector> first_, second_;
  int64_t split_row_;
};

// The original GQA projection: K = x·W_Kᵀ (+ b_K), V = x·W_Vᵀ (+ b_V), with
// W in the HF [out, in] = [g * d_h, D] layout.
// The weights live on the backend that loaded them (the one Project runs on).
class DenseKvProjector : public KvProjector {
 public:
  DenseKvProjector(compute::Weight w_k, compute::Weight w_v,
                   std::optional<compute::Matrix> b_k = std::nullopt,
                   std::optional<compute::Matrix> b_v = std::nullopt);
  absl::Status Project(compute::Backend& backend, const compute::Matrix& x,
                       compute::Matrix* k, compute::Matrix* v) const override;

 private:
  compute::Weight w_k_, w_v_;                 // [g * d_h, D]
  std::optional<compute::Matrix> b_k_, b_v_;  // [1, g * d_h]
};

// The CARE latent projection (method.md §4): c_K = x·A_Kᵀ (the cached latent,
// r_K wide), K = c_K·B_Kᵀ (+ b_K); the same for V. A is the HF-layout
// k_a_proj [r, D], B is k_b_proj [g * d_h, r]; the optional bias folds the
// original k_proj/v_proj bias. The factors are given on the host (they
// come from the conversion); the first Project on a backend loads them there
// (and reloads when called on another backend). Project is thread-safe.
class LatentKvProjector : public KvProjector {
 public:
  LatentKvProjector(MatrixRM a_k, MatrixRM b_k, MatrixRM a_v, MatrixRM b_v,
                    std::optional<Eigen::RowVectorXf> bias_k = std::nullopt,
                    std::optional<Eigen::RowVectorXf> bias_v = std::nullopt);
  absl::Status Project(compute::Backend& backend, const compute::Matrix& x,
                       compute::Matrix* k, compute::Matrix* v) const override;

  int64_t rank_k() const { return a_k_.rows(); }
  int64_t rank_v() const { return a_v_.rows(); }

 private:
  struct OnBackend {
    compute::Weight a_k, b_k, a_v, b_v;
    std::optional<compute::Matrix> bias_k, bias_v;
  };
  absl::StatusOr<const OnBackend*> Loaded(compute::Backend& backend) const;

  MatrixRM a_k_, b_k_, a_v_, b_v_;
  std::optional<Eigen::RowVectorXf> bias_k_, bias_v_;
  mutable std::mutex mu_;
  mutable const compute::Backend* loaded_for_ = nullptr;
  mutable OnBackend loaded_;
};

// The projector a checkpoint defines for `layer`: latent when config.latent
// is set (tensors self_attn.{k,v}_{a,b}_proj.weight, optional
// {k,v}_b_proj.bias), dense otherwise (self_attn.{k,v}_proj.weight, and
// .bias when config.attention_bias). Shapes are checked; errors name the
// tensor, the layer and the file. Dense weights are loaded onto `backend`
// (taken from `prefetch` when it holds them; may be null).
absl::StatusOr<std::unique_ptr<KvProjector>> LoadKvProjector(
    const ModelConfig& config, const TensorSource& source, int64_t layer,
    compute::Backend& backend, WeightPrefetch* prefetch = nullptr);

}  // namespace care::engine

#endif  // CARE_ENGINE_KV_PROJECTOR_H_
