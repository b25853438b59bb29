#include "care/convert/decompose_model.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "care/convert/covariance.h"
#include "care/util/status_macros.h"

namespace care::convert {
namespace {

Eigen::MatrixXd Gram(const MatrixRM& w, const Eigen::MatrixXd& c) {
  const Eigen::MatrixXd wd = w.cast<double>();  // [D, out]
  return wd.transpose() * c * wd;               // [out, out]
}

}  // namespace

double RelativeErrorFromGram(const Eigen::MatrixXd& gram,
                             const Decomposition& d, int64_t rank) {
  const double total = gram.trace();
  if (!(total > 0)) return 0;
  rank = std::clamp<int64_t>(rank, 0, d.right_vectors.cols());
  const Eigen::MatrixXd v = d.right_vectors.leftCols(rank);  // [out, r]
  const double kept = (v.transpose() * gram * v).trace();
  return std::max(total - kept, 0.0) / total;
}

absl::StatusOr<DecomposedModel> CalibrateAndDecompose(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const FactorizeOptions& options,
    const engine::EngineOptions& engine_options,
    const LayerCallback& after_layer) {
  if (windows.calib.seq_len != windows.heldout.seq_len) {
    return absl::InvalidArgumentError(
        "calibration and held-out windows differ in length");
  }
  const int64_t cal_tokens = windows.calib.tokens();
  engine::TokenWindows all = windows.calib;
  all.ids.insert(all.ids.end(), windows.heldout.ids.begin(),
                 windows.heldout.ids.end());
  all.num_windows += windows.heldout.num_windows;
  const int64_t layers = config.num_hidden_layers;
  const int64_t d = config.hidden_size;

  DecomposedModel out;
  CARE_ASSIGN_OR_RETURN(auto forward,
                        engine::LayerwiseForward::Create(
                            config, weights, std::move(all), engine_options));
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t l, const MatrixRM& x) -> absl::Status {
    // x: [tokens, D], calibration rows first.
    CovarianceAccumulator cal(d), held(d);
    CARE_RETURN_IF_ERROR(cal.Add(x.topRows(cal_tokens)));
    CARE_RETURN_IF_ERROR(held.Add(x.bottomRows(x.rows() - cal_tokens)));
    const auto t0 = std::chrono::steady_clock::now();
    const LayerStatistics stats{cal.Covariance(), cal.MeanAbs(), cal.tokens()};
    const Eigen::MatrixXd c_held = held.Covariance();
    CARE_ASSIGN_OR_RETURN(LayerWeights w, LoadLayerWeights(config, weights, l));
    LayerGrams g;
    g.calib_k = Gram(w.w_k, stats.covariance);
    g.calib_v = Gram(w.w_v, stats.covariance);
    g.heldout_k = Gram(w.w_k, c_held);
    g.heldout_v = Gram(w.w_v, c_held);
    absl::StatusOr<LayerDecomposition> dec =
        DecomposeLayer(std::move(w), stats, options);
    if (!dec.ok()) {
      return absl::Status(
          dec.status().code(),
          absl::StrCat("decomposing layer ", l, ": ", dec.status().message()));
    }
    out.layers.push_back(*std::move(dec));
    out.grams.push_back(std::move(g));
    out.decompose_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    return absl::OkStatus();
  };
  if (after_layer) {
    hooks.on_layer_output = [&](int64_t l, const MatrixRM&) {
      return after_layer(l);
    };
  }
  CARE_RETURN_IF_ERROR(forward->RunLayers(layers, hooks));
  std::vector<int32_t> targets(cal_tokens, -1);
  targets.insert(targets.end(), windows.heldout_targets.begin(),
                 windows.heldout_targets.end());
  CARE_ASSIGN_OR_RETURN(out.heldout_original, forward->ScoreTargets(targets));
  return out;
}

}  // namespace care::convert
