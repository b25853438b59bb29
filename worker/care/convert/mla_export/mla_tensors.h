// The tensors of a DeepSeek-V3 export (docs/checkpoint-format.md
// "DeepSeek-V3 layout"): per layer the attention becomes
//   self_attn.q_proj.weight              [n_h·(d_h + R), D]  per head
//                                        [s·q_h (d_h rows); s·pe_j·q_h (R)]
//   self_attn.kv_a_proj_with_mqa.weight  [r + R, D]  [α·W_downᵀ; pe·W_Kᵀ]
//   self_attn.kv_a_layernorm.weight      [r]         1/α
//   self_attn.kv_b_proj.weight           [n_h·2·d_h, r] per head
//                                        [sqrt(eps)·U_K[j]ᵀ; sqrt(eps)·U_V[j]ᵀ]
// and o_proj (unless refitted, o_proj_refit.h), the norms, the MLP,
// embeddings and lm_head stay as they are (DeepSeek-V3 uses the same names).
// MlaTensorSource serves that tensor set over the source checkpoint, computing
// a layer's attention tensors on demand, so the engine can evaluate the export
// and the writer can write it without the whole model in memory.
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_TENSORS_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_TENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

// A [rows, cols] float tensor holding m's values.
Tensor FromMatrix(const MatrixRM& m);

std::string KvAProjName(int64_t layer);  // ...kv_a_proj_with_mqa.weight
std::string KvANormName(int64_t layer);  // ...kv_a_layernorm.weight
std::string KvBProjName(int64_t layer);  // ...kv_b_proj.weight

// The four computed tensors of one layer, by name.
struct AttentionTensors {
  std::map<std::string, Tensor> tensors;
};

// q_proj is the source's [n_h·d_h, D] (q_bias its [n_h·d_h] bias, required
// for a layer with a bias channel, else ignored); weights are the layer's
// original K/V projections and biases (LoadLayerWeights); the layer's q/k
// folds are applied here. With a bias channel the tensors of mla_bias.h
// replace q_proj.
absl::StatusOr<AttentionTensors> BuildAttentionTensors(
    int64_t layer, const MlaLayer& mla, const Tensor& q_proj,
    const LayerWeights& weights, int64_t num_heads,
    const Tensor* q_bias = nullptr);

// The export's tensor set over `source` (a GQA checkpoint with config
// `config`): the source's k_proj/v_proj (and biases) are gone, q_proj is
// replaced and the kv_* tensors appear. `layers` must outlive the object.
class MlaTensorSource : public TensorSource {
 public:
  MlaTensorSource(const TensorSource& source, const ModelConfig& config,
                  const std::vector<MlaLayer>& layers);

  bool Has(absl::string_view name) const override;
  absl::StatusOr<std::vector<int64_t>> Shape(
      absl::string_view name) const override;
  absl::StatusOr<Tensor> LoadF32(absl::string_view name) const override;
  std::string Location(absl::string_view name) const override;
  std::vector<std::string> Names() const override;

  // True when `name` is computed here (not a copy of a source tensor).
  bool IsComputed(absl::string_view name) const;
  // Frees the cached layer's computed tensors (they are rebuilt on demand).
  void ReleaseCache() const;

 private:
  absl::StatusOr<std::shared_ptr<const AttentionTensors>> Layer(
      int64_t layer) const;

  const TensorSource& source_;
  const ModelConfig& config_;
  const std::vector<MlaLayer>& layers_;
  // A layer's refitted o_proj (MlaLayer::o_proj), or null.
  const MatrixRM* RefitOProj(absl::string_view name) const;

  std::map<std::string, int64_t, std::less<>> computed_;  // name -> layer
  // o_proj.weight names -> layer: computed when the layer has a refit
  // (checked on each call: the scorer sets layers after construction).
  std::map<std::string, int64_t, std::less<>> o_proj_;
  std::set<std::string, std::less<>> dropped_;
  mutable std::mutex mu_;
  mutable int64_t cached_layer_ = -1;
  mutable std::shared_ptr<const AttentionTensors> cached_;
};

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_TENSORS_H_
