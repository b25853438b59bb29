// Resume of the deepseek-v3 layout's calibration pass (docs/worker.md
// "Resume"), like the latent layout's: each layer's fits (every candidate,
// compressed and partial-RoPE-only, with its report) are saved as the pass
// finishes the layer, the hidden states are snapshotted between layers, and
// a retried attempt seeks the pass to the snapshot and restores the layers
// below it. Saved layers carry a key describing the candidates and the
// options that shape the fit (the state directory's fingerprint covers the
// model, windows, method and damping); a layer with another key, or
// unreadable, is ignored and recomputed.
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_RESUME_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_RESUME_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/resume_state.h"
#include "care/engine/engine.h"

namespace care::convert::mla {

// The bytes of a layer (with `key`), and back: DataLoss on any mismatch
// (key, candidate count, truncation).
std::string SerializeCalibratedLayer(const std::string& key,
                                     const CalibratedLayer& layer);
absl::StatusOr<CalibratedLayer> ParseCalibratedLayer(absl::string_view bytes,
                                                     const std::string& key,
                                                     size_t candidates);

// Best effort: a failure is logged.
void SaveCalibratedLayer(ResumeState& state, int64_t layer,
                         const std::string& key, const CalibratedLayer& fits);
// nullopt when absent, unusable or saved with another key (logged).
std::optional<CalibratedLayer> LoadCalibratedLayer(const ResumeState& state,
                                                   int64_t layer,
                                                   const std::string& key,
                                                   size_t candidates);

// What a retried pass takes from the state: layers 0..layers-1 (verified
// loadable; LoadCalibratedLayer reads each when it is needed, so memory
// holds one at a time) and, to continue, the hidden states at that layer;
// or every layer and the original model's held-out score (the pass is
// done).
struct RestoredPass {
  int64_t layers = 0;
  std::optional<SavedHidden> hidden;
  std::optional<engine::NllSum> heldout_original;
};
// `tokens` × `dim` is the pass's hidden-state shape. Anything missing or
// unusable means starting over (layers = 0).
RestoredPass RestorePass(const ResumeState& state, const std::string& key,
                         size_t candidates, int64_t num_layers, int64_t tokens,
                         int64_t dim);
// The pass is complete: its held-out score is saved, the snapshot dropped.
void SavePassDone(ResumeState& state, const engine::NllSum& heldout);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_RESUME_H_
