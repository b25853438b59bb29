// The calibrate stage: one pass of the original model that accumulates each
// layer's k/v-input covariance and decomposes the layer at once
// (decompose_model.h), resuming from saved layers when there are any.
#include "base/status_macros.h"
#include "care/convert/flop_model.h"
#include "care/convert/stages/stages.h"

namespace care::convert::stage {

absl::StatusOr<DecomposedModel> Calibrate(const Inputs& in,
                                          StageProgress& progress,
                                          ConversionReport* report) {
  StageTimer timer;
  const ModelConfig& config = in.config();
  const int64_t L = in.num_layers();
  const CalibrationWindows& windows = in.windows;
  const int64_t pass_tokens = windows.calib.tokens() + windows.heldout.tokens();
  const double fit_flops = FitFlopsPerLayer(config, windows.calib.tokens(),
                                            windows.heldout.tokens());
  progress.Begin("calibrate");
  // The first layer the pass reports after k restored ones is layer k.
  bool first_layer = true;
  // Without held-out windows the pass ends at the last layer's k/v input:
  // that layer adds only its fit.
  const auto layer_flops =
      ForwardLayerFlops(config, pass_tokens, report->calib_seq_len, fit_flops);
  const bool heldout = windows.heldout.num_windows > 0;
  LayerCallback calibrate_layer =
      progress.Layers("calibrate", L, 0, 1, [&, layer_flops](int64_t l) {
        return heldout || l + 1 < L ? layer_flops(l) : fit_flops;
      });
  CARE_ASSIGN_OR_RETURN(
      DecomposedModel dm,
      CalibrateAndDecompose(
          config, in.weights(), windows, in.factorize, in.engine,
          [&](int64_t l) {
            if (first_layer) progress.set_resumed_layers(l);
            first_layer = false;
            return calibrate_layer(l);
          },
          in.resume.get()));
  report->resumed_layers = dm.resumed_layers;
  progress.set_resumed_layers(dm.resumed_layers);
  if (dm.resumed_layers < L) {
    progress.AddFlops("calibrate",
                      static_cast<double>(dm.heldout_original.count) *
                          HeadFlopsPerToken(config));
  } else {
    CARE_RETURN_IF_ERROR(progress.Step("calibrate", L, L));
  }
  report->heldout_nll_original = dm.heldout_original.mean();
  timer.Done("calibrate", report, progress.Flops("calibrate"));
  report->timings.push_back(
      {"decompose", dm.decompose_seconds,
       static_cast<double>(L - dm.resumed_layers) * fit_flops});
  return dm;
}

}  // namespace care::convert::stage
