// The DeepSeek-V3 layout's entries of ConversionReport::layers: the
// per-layer fields every layout's report shares (ranks, held-out errors,
// retained energy), taken from what the export measured per layer
// (MlaExportReport::layers), so the API, carectl and the HTML report show
// them as for the latent layout.
#ifndef CARE_CONVERT_MLA_EXPORT_LAYER_REPORTS_H_
#define CARE_CONVERT_MLA_EXPORT_LAYER_REPORTS_H_

#include <vector>

#include "care/convert/mla_export/mla_report.h"
#include "care/convert/report.h"

namespace care::convert {

// One per export layer: rank_k = rank_v = kv_lora_rank (K_nope and V share
// the joint latent), errors as measured (K: the whole key, RoPE part
// exact), retained_energy_k = _v = the joint spectrum's, rope_energy, and
// nope_score_error when the NoPE correction ran.
std::vector<LayerReport> MlaLayerReports(const MlaExportReport& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_MLA_EXPORT_LAYER_REPORTS_H_
