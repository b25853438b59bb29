// Calibration and decomposition in one pass of the original model: when the
// engine hands over layer l's k/v input, its covariance is accumulated,
// layer l is decomposed at once, and only what later stages need is kept
// (spectra, right singular vectors, and the [g·d_h, g·d_h] Grams WᵀCW that
// give activation errors at any rank). No layer's D×D covariance outlives
// its layer, so peak memory holds one C (plus its held-out twin), not L.
#ifndef CARE_CONVERT_DECOMPOSE_MODEL_H_
#define CARE_CONVERT_DECOMPOSE_MODEL_H_

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/calibrate.h"
#include "care/convert/latent_layer.h"

namespace care::convert {

// Wᵀ·C·W for K and V ([g·d_h, g·d_h]) under the calibration and held-out
// covariances: ‖X·W·(I − V_r·V_rᵀ)‖²/N = tr(G) − tr(V_rᵀ·G·V_r).
struct LayerGrams {
  Eigen::MatrixXd calib_k, calib_v;
  Eigen::MatrixXd heldout_k, heldout_v;
};

struct DecomposedModel {
  // [L], without the weights: LoadLayerWeights re-reads them for
  // TruncateLayer, so W_K and W_V of every layer do not stay in memory.
  std::vector<LayerDecomposition> layers;
  std::vector<LayerGrams> grams;    // [L]
  engine::NllSum heldout_original;  // original model, held-out windows
  double decompose_seconds = 0;     // of the pass, spent factorizing
  // Layers taken from resume state instead of being run (L when the whole
  // pass, held-out score included, was restored).
  int64_t resumed_layers = 0;
};

class ResumeState;

// One engine pass over calibration + held-out windows (the ORIGINAL model).
// Without held-out windows (windows.heldout.num_windows == 0: the job needs
// no held-out figures) the pass stops at the last layer's k/v input and
// nothing is scored; the held-out Grams stay empty.
// With `resume` (may be null), the pass starts from the saved layers and
// hidden-state snapshot when there are any, saves every fitted layer, and
// snapshots the hidden states when due (at most ~10% of the pass's time,
// and always when `after_layer` stops it) and the held-out score at the end.
absl::StatusOr<DecomposedModel> CalibrateAndDecompose(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const FactorizeOptions& options,
    const engine::EngineOptions& engine_options,
    const LayerCallback& after_layer, ResumeState* resume = nullptr);

// The "sequential" variant (GPTQ-style, method.md §2): with the ranks fixed,
// a second pass re-fits layer l on the k/v input produced by the already
// converted layers 0..l-1 (the engine asks for layer l's projector after
// handing over its input), so each layer corrects for the error upstream.
struct SequentialModel {
  std::vector<LatentLayer> layers;                 // [L] at the given ranks
  std::vector<LayerDecomposition> decompositions;  // [L], weights dropped
  std::vector<LayerGrams> grams;     // [L] under the propagated inputs
  engine::NllSum heldout_converted;  // the converted model, held-out
};

absl::StatusOr<SequentialModel> SequentialRefit(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const FactorizeOptions& options,
    const std::vector<int64_t>& rank_k, const std::vector<int64_t>& rank_v,
    const engine::EngineOptions& engine_options,
    const LayerCallback& after_layer);

// Relative activation error of the rank-r truncation of `d` under the Gram
// G = WᵀCW: (tr G − tr(V_rᵀ G V_r)) / tr G; 0 when tr G == 0.
double RelativeErrorFromGram(const Eigen::MatrixXd& gram,
                             const Decomposition& d, int64_t rank);

}  // namespace care::convert

#endif  // CARE_CONVERT_DECOMPOSE_MODEL_H_
