// Calibration (method.md §2, docs/conversion.md): seeded windows of the
// calibration stream, the original model run layer by layer through the
// engine, and per layer the second moment of the k/v input. A held-out slice
// of the calibration range (never sampled for C) measures the per-layer
// activation errors and scores the `auto` allocation candidates.
#ifndef CARE_CONVERT_CALIBRATE_H_
#define CARE_CONVERT_CALIBRATE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/factorize.h"
#include "care/data/windows.h"
#include "care/engine/engine.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert {

struct CalibrationPlan {
  int64_t samples = 256;  // calibration windows
  int64_t seq_len = 32;   // tokens per window
  uint64_t seed = 0;
  data::TokenRange range;  // calibration part of the stream
  // The last `heldout_fraction` of `range` is kept out of C and cut into at
  // most `heldout_windows` consecutive windows of seq_len tokens.
  double heldout_fraction = 0.1;
  int64_t heldout_windows = 64;
};

struct CalibrationWindows {
  engine::TokenWindows calib;
  engine::TokenWindows heldout;
  std::vector<int32_t> heldout_targets;  // next token; -1 at window ends
  data::TokenRange sample_range;         // where calib windows were drawn
  data::TokenRange heldout_range;
};

// Cuts the windows. FailedPrecondition when the sample range holds fewer
// than samples·seq_len tokens (the calibration set is shorter than asked)
// or the held-out slice has no full window; InvalidArgument on bad sizes.
absl::StatusOr<CalibrationWindows> MakeCalibrationWindows(
    const std::vector<int32_t>& stream, const CalibrationPlan& plan);

// Next-token targets of consecutive windows: ids[i+1] inside a window, -1 at
// its last position.
std::vector<int32_t> NextTokenTargets(const engine::TokenWindows& windows);

// Called after each layer of a pass (progress, cancellation); a non-OK
// status stops the pass.
using LayerCallback = std::function<absl::Status(int64_t layer)>;

struct CalibrationStatistics {
  std::vector<LayerStatistics> calib;    // [L] from the sampled windows
  std::vector<LayerStatistics> heldout;  // [L] from the held-out windows
  engine::NllSum heldout_original;       // original model on held-out
};

// One pass of the ORIGINAL model over calibration + held-out windows.
absl::StatusOr<CalibrationStatistics> CollectStatistics(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const engine::EngineOptions& options,
    const LayerCallback& after_layer);

// Layer l's converted projector (nullptr keeps the checkpoint's own).
using ProjectorFactory =
    std::function<std::unique_ptr<engine::KvProjector>(int64_t layer)>;

// NLL of `targets` on `windows` with the given projectors.
absl::StatusOr<engine::NllSum> WindowNll(const ModelConfig& config,
                                         const TensorSource& weights,
                                         const engine::TokenWindows& windows,
                                         const std::vector<int32_t>& targets,
                                         const ProjectorFactory& projectors,
                                         const engine::EngineOptions& options,
                                         const LayerCallback& after_layer);

}  // namespace care::convert

#endif  // CARE_CONVERT_CALIBRATE_H_
