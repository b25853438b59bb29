// "q/k norm fold only" for Qwen3 (docs/quality.md): the source model with
// its per-head q_norm/k_norm replaced by the export's folds (qk_norm_fold.h)
// and nothing else changed (RoPE whole, no latent), so the report can
// separate the fold's loss from the rope split's and the latent's.
#ifndef CARE_CONVERT_MLA_EXPORT_FOLD_ONLY_H_
#define CARE_CONVERT_MLA_EXPORT_FOLD_ONLY_H_

#include <string>
#include <vector>

#include "care/convert/mla_export/mla_layer.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

// `config` with qk_norm off: the engine's GQA forward without the norms.
ModelConfig FoldOnlyConfig(const ModelConfig& config);

// The source's tensors with q_proj / k_proj rows multiplied by each layer's
// q_fold / k_fold and q_norm / k_norm gone. `source`, `config` and `layers`
// must outlive the object; a layer without folds is served unchanged.
class FoldOnlySource : public TensorSource {
 public:
  FoldOnlySource(const TensorSource& source, const ModelConfig& config,
                 const std::vector<MlaLayer>& layers);

  bool Has(absl::string_view name) const override;
  absl::StatusOr<std::vector<int64_t>> Shape(
      absl::string_view name) const override;
  absl::StatusOr<Tensor> LoadF32(absl::string_view name) const override;
  std::string Location(absl::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  bool Dropped(absl::string_view name) const;

  const TensorSource& source_;
  const ModelConfig& config_;
  const std::vector<MlaLayer>& layers_;
};

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_FOLD_ONLY_H_
