// The healing stage of the DeepSeek-V3 layout (docs/conversion.md
// "Healing"), run by ConvertModel between MlaChoose and MlaEvaluate with
// `--heal local`:
//
//   MlaCalibrate ─▶ MlaChoose ─▶ MlaHeal ─▶ MlaEvaluate ─▶ MlaWrite
//
// One pass over the healing windows, layer by layer in bounded memory: at
// layer l the original model's k/v input x_l gives the target (the
// original layer's attention output after o_proj, gqa_attention.h); the
// student input is x_l itself (--heal-inputs original) or the input that
// the already-healed export layers below produce (healed). The chosen
// candidate's layer l is healed on the training windows (heal_layer.h),
// measured on the held-out windows and kept only when its held-out error
// fell.
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_STAGE_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_STAGE_H_

#include "absl/status/status.h"
#include "care/convert/mla_export/export_stages.h"
#include "care/convert/stages/stages.h"

namespace care::convert::stage {

// Nothing unless options.mla.heal: InvalidArgument for healing options out
// of range or a model healing does not support (attention biases), before
// any calibration work.
absl::Status MlaHealPreflight(const ConvertOptions& options, const Inputs& in);

// Nothing unless options.mla.heal; expects MlaHealPreflight to have passed
// (ConvertModel runs it before the calibration pass). Training windows:
// options.mla.heal_data (default: the calibration file's sampled range),
// heal_seq_len tokens each, up to heal_tokens; held-out windows: the
// calibration held-out slice regrouped into windows of heal_seq_len. Heals
// fit.best().layers in place. Fills: deepseek_v3.heal,
// deepseek_v3.layers[*].alpha_log2 and norm_error_mean of healed layers.
absl::Status MlaHeal(const ConvertOptions& options, const Inputs& in,
                     MlaFit& fit, StageProgress& progress,
                     ConversionReport* report);

}  // namespace care::convert::stage

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_STAGE_H_
