// ConvertModel: the stages of stages/stages.h in data-flow order. A new
// stage or output layout plugs in as stages.h describes; this function only
// sequences them and owns what they share (progress, the report).
#include "care/convert/pipeline.h"

#include <utility>

#include "base/status_macros.h"
#include "care/convert/mla_export/export_stages.h"
#include "care/convert/mla_export/heal_stage.h"
#include "care/convert/stages/stages.h"

namespace care::convert {

std::string HeldoutReason(const ConvertOptions& options) {
  if (options.allocation == AllocationStrategy::kAuto) return "allocation auto";
  // The deepseek-v3 layout scores its rope split (and `auto` candidates) on
  // the held-out windows.
  if (options.output_layout == OutputLayout::kDeepseekV3) {
    return "deepseek-v3 layout";
  }
  if (options.sequential) return "sequential";
  if (options.heldout_figures) return "asked";
  return "";
}

absl::StatusOr<ConversionReport> ConvertModel(const ConvertOptions& options,
                                              const ProgressCallback& progress,
                                              const CancelCheck& cancelled) {
  stage::StageProgress steps(progress, cancelled);
  ConversionReport report;
  CARE_ASSIGN_OR_RETURN(const stage::Inputs in,
                        stage::Load(options, steps, &report));
  if (options.output_layout == OutputLayout::kDeepseekV3) {
    // Its own fit (rope split + one joint latent), evaluated and written
    // as a stock DeepSeek-V3 checkpoint (mla_export/export_stages.h).
    // Healing's options are checked before the calibration pass they follow.
    CARE_RETURN_IF_ERROR(stage::MlaHealPreflight(options, in));
    CARE_ASSIGN_OR_RETURN(stage::MlaFit fit,
                          stage::MlaCalibrate(options, in, steps, &report));
    CARE_RETURN_IF_ERROR(stage::MlaChoose(options, in, fit, steps, &report));
    CARE_RETURN_IF_ERROR(stage::MlaHeal(options, in, fit, steps, &report));
    CARE_RETURN_IF_ERROR(stage::MlaEvaluate(options, in, fit, steps, &report));
    CARE_RETURN_IF_ERROR(stage::MlaWrite(options, in, fit, steps, &report));
    // The output is in place: the state has served its purpose.
    if (in.resume) in.resume->Remove();
    return report;
  }
  CARE_ASSIGN_OR_RETURN(DecomposedModel decomposed,
                        stage::Calibrate(in, steps, &report));
  CARE_ASSIGN_OR_RETURN(
      stage::Fit fit,
      stage::Allocate(options, in, std::move(decomposed), steps, &report));
  if (options.sequential) {
    CARE_ASSIGN_OR_RETURN(
        fit, stage::Sequential(in, std::move(fit), steps, &report));
  }
  stage::ReportLayers(fit, &report);
  // The latent layers are all that is needed from here on.
  fit.decompositions.clear();
  fit.grams.clear();
  // The tensors are written while the evaluation runs (stages/write.cc).
  std::unique_ptr<stage::StartedWrite> started =
      stage::StartWrite(options, in, fit.layers);
  CARE_RETURN_IF_ERROR(stage::Evaluate(in, fit.layers, steps, &report));
  CARE_RETURN_IF_ERROR(stage::EvaluateRollingPerplexity(options, in, fit.layers,
                                                        steps, &report));
  CARE_RETURN_IF_ERROR(
      stage::EvaluateTasks(options, in, fit.layers, steps, &report));
  CARE_RETURN_IF_ERROR(stage::Write(options, in, fit.layers, steps, &report,
                                    std::move(started)));
  // The output is in place: the state has served its purpose.
  if (in.resume) in.resume->Remove();
  return report;
}

}  // namespace care::convert
