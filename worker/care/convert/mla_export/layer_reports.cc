#include "care/convert/mla_export/layer_reports.h"

#include <utility>

namespace care::convert {

std::vector<LayerReport> MlaLayerReports(const MlaExportReport& report) {
  std::vector<LayerReport> out;
  out.reserve(report.layers.size());
  for (const MlaLayerReport& m : report.layers) {
    LayerReport l;
    l.rank_k = l.rank_v = report.kv_lora_rank;
    l.heldout_error_k = m.heldout_error_k;
    l.heldout_error_v = m.heldout_error_v;
    l.calib_error_k = m.calib_error_k;
    l.calib_error_v = m.calib_error_v;
    l.retained_energy_k = l.retained_energy_v = m.retained_energy;
    l.note = m.note;
    l.rope_energy = m.rope_energy;
    if (report.nope_correction) l.nope_score_error = m.nope_corrected_error;
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace care::convert
