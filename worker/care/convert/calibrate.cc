#include "care/convert/calibrate.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/covariance.h"

namespace care::convert {
namespace {

engine::TokenWindows ToTokenWindows(std::vector<int32_t> ids,
                                    int64_t num_windows, int64_t seq_len) {
  engine::TokenWindows w;
  w.num_windows = num_windows;
  w.seq_len = seq_len;
  w.ids = std::move(ids);
  return w;
}

LayerStatistics ToStatistics(const CovarianceAccumulator& acc) {
  return {acc.Covariance(), acc.MeanAbs(), acc.tokens()};
}

}  // namespace

std::vector<int32_t> NextTokenTargets(const engine::TokenWindows& windows) {
  std::vector<int32_t> t(windows.ids.size(), -1);
  for (int64_t w = 0; w < windows.num_windows; ++w) {
    const int64_t base = w * windows.seq_len;
    for (int64_t i = 0; i + 1 < windows.seq_len; ++i) {
      t[base + i] = windows.ids[base + i + 1];
    }
  }
  return t;
}

absl::StatusOr<CalibrationWindows> MakeCalibrationWindows(
    const std::vector<int32_t>& stream, const CalibrationPlan& plan) {
  const int64_t n = static_cast<int64_t>(stream.size());
  if (plan.samples < 1 || plan.seq_len < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration: samples must be >= 1 and seq_len >= 2, got ",
                     plan.samples, " x ", plan.seq_len));
  }
  if (!(plan.heldout_fraction > 0 && plan.heldout_fraction < 1) ||
      plan.heldout_windows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration: held-out fraction must be in (0, 1) and "
                     "held-out windows >= 1, got ",
                     plan.heldout_fraction, " and ", plan.heldout_windows));
  }
  CARE_ASSIGN_OR_RETURN(data::TokenRange range,
                        data::ResolveRange(n, plan.range));
  const int64_t span = range.end - range.begin;
  const int64_t split =
      range.end -
      static_cast<int64_t>(std::floor(span * plan.heldout_fraction));
  CalibrationWindows out;
  out.sample_range = {range.begin, split};
  out.heldout_range = {split, range.end};
  const int64_t asked = plan.samples * plan.seq_len;
  if (split - range.begin < asked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "calibration data is shorter than asked: ", split - range.begin,
        " tokens available for sampling (calibration range [", range.begin,
        ", ", range.end, ") less the held-out ", plan.heldout_fraction * 100,
        "%), but ", plan.samples, " samples x ", plan.seq_len,
        " tokens = ", asked,
        " requested; lower --calib-samples / --calib-seq-len or give more "
        "text"));
  }
  if (range.end - split < plan.seq_len) {
    return absl::FailedPreconditionError(absl::StrCat(
        "calibration: the held-out slice [", split, ", ", range.end,
        ") is shorter than one window of ", plan.seq_len, " tokens"));
  }
  CARE_ASSIGN_OR_RETURN(
      std::vector<data::Window> cal,
      data::SampleCalibrationWindows(n, plan.samples, plan.seq_len, plan.seed,
                                     out.sample_range));
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> cal_ids,
                        data::MaterializeWindows(stream, cal));
  out.calib = ToTokenWindows(std::move(cal_ids), plan.samples, plan.seq_len);
  CARE_ASSIGN_OR_RETURN(
      std::vector<data::Window> held,
      data::ChunkEvaluationWindows(n, plan.seq_len, plan.heldout_windows,
                                   out.heldout_range));
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> held_ids,
                        data::MaterializeWindows(stream, held));
  out.heldout = ToTokenWindows(std::move(held_ids),
                               static_cast<int64_t>(held.size()), plan.seq_len);
  out.heldout_targets = NextTokenTargets(out.heldout);
  return out;
}

absl::StatusOr<CalibrationStatistics> CollectStatistics(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const engine::EngineOptions& options,
    const LayerCallback& after_layer) {
  if (windows.calib.seq_len != windows.heldout.seq_len) {
    return absl::InvalidArgumentError(
        "calibration and held-out windows differ in length");
  }
  // One batch: calibration rows first, held-out rows after.
  const int64_t cal_tokens = windows.calib.tokens();
  std::vector<int32_t> ids = windows.calib.ids;
  ids.insert(ids.end(), windows.heldout.ids.begin(), windows.heldout.ids.end());
  engine::TokenWindows all = ToTokenWindows(
      std::move(ids), windows.calib.num_windows + windows.heldout.num_windows,
      windows.calib.seq_len);
  const int64_t layers = config.num_hidden_layers;
  const int64_t d = config.hidden_size;
  std::vector<LayerStatistics> cal(layers), held(layers);

  CARE_ASSIGN_OR_RETURN(
      auto forward, engine::LayerwiseForward::Create(config, weights,
                                                     std::move(all), options));
  compute::Backend& be = forward->backend();
  // The rows [row0, row0 + n) of x summed on the backend (GramAdd: no copy
  // of the activations to the host), then the [D, D] statistics brought back.
  auto stats = [&](const compute::Matrix& x, int64_t row0,
                   int64_t n) -> absl::StatusOr<LayerStatistics> {
    CARE_ASSIGN_OR_RETURN(compute::Gram g, be.NewGram(d));
    CARE_RETURN_IF_ERROR(be.GramAdd(compute::RowsView(x, row0, n), &g));
    CARE_ASSIGN_OR_RETURN(compute::GramHost host, be.GramDownload(g));
    return ToStatistics(CovarianceAccumulator::FromGram(host));
  };
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t l, const compute::Matrix& x) -> absl::Status {
    // x: [tokens, D], calibration rows first
    CARE_ASSIGN_OR_RETURN(cal[l], stats(x, 0, cal_tokens));
    CARE_ASSIGN_OR_RETURN(held[l], stats(x, cal_tokens, x.rows - cal_tokens));
    return absl::OkStatus();
  };
  if (after_layer) {
    hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
      return after_layer(l);
    };
  }
  CARE_RETURN_IF_ERROR(forward->RunLayers(layers, hooks));
  std::vector<int32_t> targets(cal_tokens, -1);
  targets.insert(targets.end(), windows.heldout_targets.begin(),
                 windows.heldout_targets.end());
  CalibrationStatistics out;
  CARE_ASSIGN_OR_RETURN(out.heldout_original, forward->ScoreTargets(targets));
  out.calib = std::move(cal);
  out.heldout = std::move(held);
  return out;
}

absl::StatusOr<engine::NllSum> WindowNll(const ModelConfig& config,
                                         const TensorSource& weights,
                                         const engine::TokenWindows& windows,
                                         const std::vector<int32_t>& targets,
                                         const ProjectorFactory& projectors,
                                         const engine::EngineOptions& options,
                                         const LayerCallback& after_layer) {
  CARE_ASSIGN_OR_RETURN(auto forward, engine::LayerwiseForward::Create(
                                          config, weights, windows, options));
  engine::LayerHooks hooks;
  if (projectors) {
    hooks.make_kv_projector =
        [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
      return projectors(l);
    };
  }
  if (after_layer) {
    hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
      return after_layer(l);
    };
  }
  CARE_RETURN_IF_ERROR(forward->RunLayers(config.num_hidden_layers, hooks));
  return forward->ScoreTargets(targets);
}

}  // namespace care::convert
