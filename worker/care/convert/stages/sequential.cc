// The sequential stage (options.sequential; method.md §2, GPTQ-style): with
// the ranks fixed, every layer is re-fitted on the k/v inputs that the
// converted layers below it produce, in one more calibration pass.
#include <utility>

#include "base/status_macros.h"
#include "care/convert/flop_model.h"
#include "care/convert/stages/stages.h"

namespace care::convert::stage {

absl::StatusOr<Fit> Sequential(const Inputs& in, Fit fit,
                               StageProgress& progress,
                               ConversionReport* report) {
  StageTimer timer;
  const ModelConfig& config = in.config();
  const CalibrationWindows& windows = in.windows;
  const int64_t pass_tokens = windows.calib.tokens() + windows.heldout.tokens();
  const double fit_flops = FitFlopsPerLayer(config, windows.calib.tokens(),
                                            windows.heldout.tokens());
  progress.Begin("sequential");
  CARE_ASSIGN_OR_RETURN(
      SequentialModel seq,
      SequentialRefit(config, in.weights(), windows, in.factorize,
                      fit.allocation.rank_k, fit.allocation.rank_v, in.engine,
                      progress.Layers("sequential", in.num_layers(), 0, 1,
                                      ForwardLayerFlops(config, pass_tokens,
                                                        report->calib_seq_len,
                                                        fit_flops))));
  progress.AddFlops("sequential",
                    static_cast<double>(seq.heldout_converted.count) *
                        HeadFlopsPerToken(config));
  fit.layers = std::move(seq.layers);
  fit.decompositions = std::move(seq.decompositions);
  fit.grams = std::move(seq.grams);
  report->heldout_nll_converted = seq.heldout_converted.mean();
  timer.Done("sequential", report, progress.Flops("sequential"));
  return fit;
}

}  // namespace care::convert::stage
