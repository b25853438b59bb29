// Resume of the healing stage (docs/worker.md "Resume"): each layer's
// outcome — its report, the kept parameters when healing was accepted, and
// the latent-norm scale they need — is saved as the stage finishes the
// layer; a retried attempt restores the layers on disk and heals only the
// rest. Healing is deterministic (seeded batches, fixed reduction order), so
// a resumed run writes what an uninterrupted one writes, bit for bit.
//
// A record carries a key built from everything that shapes a layer's
// healing beyond the state directory's fingerprint (the chosen candidate,
// the fit options, every healing option and a hash of the healing windows'
// token ids); a record with another key, or unreadable, is ignored and the
// layer is healed again.
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_RESUME_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_RESUME_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/mla_report.h"
#include "care/convert/resume_state.h"

namespace care::convert::mla {

struct HealedLayer {
  MlaHealLayerReport report;
  // Set iff report.accepted: the kept parameters and the latent norm's
  // scale for them (MlaLayer::alpha_log2, norm_error_mean).
  std::optional<HealParams<float>> params;
  int alpha_log2 = 0;
  double norm_error_mean = 0;
};

// The bytes of a layer (with `key`), and back: DataLoss on any mismatch
// (key, shapes against `shape`, truncation, trailing bytes).
std::string SerializeHealedLayer(const std::string& key, const HealedLayer& l);
absl::StatusOr<HealedLayer> ParseHealedLayer(absl::string_view bytes,
                                             const std::string& key,
                                             const HealShape& shape);

// Best effort: a failure is logged.
void SaveHealedLayer(ResumeState& state, int64_t layer, const std::string& key,
                     const HealedLayer& l);
// nullopt when absent, unusable or saved with another key (logged).
std::optional<HealedLayer> LoadHealedLayer(const ResumeState& state,
                                           int64_t layer,
                                           const std::string& key,
                                           const HealShape& shape);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_RESUME_H_
