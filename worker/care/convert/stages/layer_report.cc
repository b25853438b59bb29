// The per-layer report of the final fit: ranks, activation errors on the
// calibration and held-out tokens, retained energy, notes and the spectra
// the allocation compared.
#include <utility>

#include "care/convert/stages/stages.h"

namespace care::convert::stage {

void ReportLayers(const Fit& fit, ConversionReport* report) {
  for (size_t l = 0; l < fit.layers.size(); ++l) {
    const LayerDecomposition& d = fit.decompositions[l];
    const LayerGrams& g = fit.grams[l];
    LayerReport lr;
    lr.rank_k = fit.allocation.rank_k[l];
    lr.rank_v = fit.allocation.rank_v[l];
    lr.heldout_error_k = RelativeErrorFromGram(g.heldout_k, d.k, lr.rank_k);
    lr.heldout_error_v = RelativeErrorFromGram(g.heldout_v, d.v, lr.rank_v);
    lr.calib_error_k = RelativeErrorFromGram(g.calib_k, d.k, lr.rank_k);
    lr.calib_error_v = RelativeErrorFromGram(g.calib_v, d.v, lr.rank_v);
    lr.retained_energy_k = fit.layers[l].k.retained_energy;
    lr.retained_energy_v = fit.layers[l].v.retained_energy;
    lr.note = d.scaling.note;
    if (l < fit.spectra_k.size() && l < fit.spectra_v.size()) {
      lr.spectrum_k = fit.spectra_k[l];
      lr.spectrum_v = fit.spectra_v[l];
    }
    report->layers.push_back(std::move(lr));
  }
}

}  // namespace care::convert::stage
