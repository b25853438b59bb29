// Scores the export's (rope_dim, freqfold) candidates while the calibration
// pass runs (docs/conversion.md "DeepSeek-V3 layout", `auto`): each
// candidate has two forwards of the engine's deepseek_v3 family on the
// held-out scoring windows (its export and its partial-RoPE-only twin),
// advanced one layer as soon as that layer is fitted (an o_proj refit twin
// shares its sibling's partial-RoPE-only forward: the same layers). A
// fitted layer is
// dropped once its forwards have run it, so memory holds per candidate two
// hidden states and one layer, never a candidate's whole model; the winner
// is refitted afterwards (export_stages.cc).
#ifndef CARE_CONVERT_MLA_EXPORT_CANDIDATE_SCORING_H_
#define CARE_CONVERT_MLA_EXPORT_CANDIDATE_SCORING_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/mla_export/mla_config.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/engine/engine.h"

namespace care::convert::mla {

struct CandidateScore {
  double heldout_nll = 0;               // the export
  double heldout_nll_partial_rope = 0;  // same split at full latent rank
};

class CandidateScorer {
 public:
  // `source` and `weights` must outlive the scorer. Weight prefetch is off
  // in its forwards (a layer exists only once it is added).
  static absl::StatusOr<std::unique_ptr<CandidateScorer>> Create(
      const ModelConfig& source, const TensorSource& weights,
      const std::vector<CandidateShape>& candidates,
      const engine::TokenWindows& windows, engine::EngineOptions engine,
      const ExportMetadata& meta);
  ~CandidateScorer();

  // Runs layer l (the next one) of every forward with `fits` (one entry per
  // candidate), then drops the fitted layers.
  absl::Status AddLayer(int64_t l, const CalibratedLayer& fits);

  // After every layer: the held-out NLL of each candidate.
  absl::StatusOr<std::vector<CandidateScore>> Scores(
      const std::vector<int32_t>& targets);

 private:
  struct Variant {
    std::vector<MlaLayer> layers;  // [L]: placeholders but the running one
    ModelConfig config;
    std::unique_ptr<MlaTensorSource> source;
    std::unique_ptr<engine::LayerwiseForward> forward;
  };
  CandidateScorer() = default;
  static absl::Status Open(const ModelConfig& source,
                           const TensorSource& weights, MlaLayer placeholder,
                           const engine::TokenWindows& windows,
                           const engine::EngineOptions& engine,
                           const ExportMetadata& meta, Variant& v);
  static absl::Status Run(Variant& v, int64_t l, const MlaLayer& layer);

  // [candidates]; stable addresses: the sources and forwards hold
  // references to their variant's layers and config. rope_only_[i] is null
  // for a refit twin, which reads rope_only_[rope_of_[i]].
  std::vector<std::unique_ptr<Variant>> export_, rope_only_;
  std::vector<size_t> rope_of_;
};

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_CANDIDATE_SCORING_H_
