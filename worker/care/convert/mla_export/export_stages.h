// The conversion stages of the DeepSeek-V3 output layout (docs/conversion.md
// "DeepSeek-V3 layout"), run by ConvertModel after stage::Load instead of
// the latent layout's Calibrate → Allocate → Evaluate → Write:
//
//   MlaCalibrate ─▶ MlaChoose ─▶ MlaEvaluate ─▶ MlaWrite
//
// MlaCalibrate runs the original model once over the calibration and
// held-out windows; at each layer's k/v input it fits every (rope_dim,
// freqfold) candidate (one unless `auto`) at the budget's kv_lora_rank and
// at full rank ("partial RoPE only") and advances each candidate's scoring
// forwards (engine's deepseek_v3 family, held-out windows) by that layer
// (candidate_scoring.h). MlaChoose keeps the best, refitting it when `auto`
// kept only the candidates' scores. MlaEvaluate measures original,
// partial-RoPE-only and converted perplexity on the evaluation windows, and
// MlaWrite writes the checkpoint from the same tensor source the engine
// evaluated.
#ifndef CARE_CONVERT_MLA_EXPORT_EXPORT_STAGES_H_
#define CARE_CONVERT_MLA_EXPORT_EXPORT_STAGES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/convert/stages/stages.h"

namespace care::convert::stage {

struct MlaCandidate {
  int64_t rope_dim = 0, freqfold = 0, kv_lora_rank = 0;
  int64_t latent_refine = 0;  // rounds (options.h)
  bool o_proj_refit = false;  // o_proj_refit.h
  // [L] at kv_lora_rank and at full latent rank; empty for an `auto`
  // candidate until MlaChoose refits the chosen one.
  std::vector<mla::MlaLayer> layers;
  std::vector<mla::MlaLayer> rope_only;
  std::vector<MlaLayerReport> reports;  // [L] of `layers`
  // Held-out NLL on the scoring windows (candidate_scoring.h), of the
  // export and of its partial-RoPE-only twin.
  double heldout_nll = 0, heldout_nll_partial_rope = 0;
};

struct MlaFit {
  std::vector<MlaCandidate> candidates;
  int64_t chosen = 0;
  const MlaCandidate& best() const { return candidates[chosen]; }
};

// The (rope_dim, freqfold, kv_lora_rank) candidates the options and budget
// allow for the model. InvalidArgument naming the option when none fits.
absl::StatusOr<std::vector<MlaCandidate>> MlaCandidates(
    const ConvertOptions& options, const ModelConfig& config);

// Fills: architecture, heldout_nll_original, budget_width, deepseek_v3
// (layout facts).
absl::StatusOr<MlaFit> MlaCalibrate(const ConvertOptions& options,
                                    const Inputs& in, StageProgress& progress,
                                    ConversionReport* report);

// Fills: allocation_chosen, heldout_nll_converted, kv_width_after, layers
// (layer_reports.h), deepseek_v3 (candidates, layers,
// heldout_nll_partial_rope).
absl::Status MlaChoose(const ConvertOptions& options, const Inputs& in,
                       MlaFit& fit, StageProgress& progress,
                       ConversionReport* report);

// Fills: original, converted, deepseek_v3.eval_ppl_partial_rope.
absl::Status MlaEvaluate(const ConvertOptions& options, const Inputs& in,
                         const MlaFit& fit, StageProgress& progress,
                         ConversionReport* report);

// Writes the checkpoint, and the report so far as care_report.json and
// care_report.html (RenderReportFiles, as the latent layout).
absl::Status MlaWrite(const ConvertOptions& options, const Inputs& in,
                      const MlaFit& fit, StageProgress& progress,
                      ConversionReport* report);

}  // namespace care::convert::stage

#endif  // CARE_CONVERT_MLA_EXPORT_EXPORT_STAGES_H_
