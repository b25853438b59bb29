#include "care/convert/decompose_model.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/compute/cpu_gemm.h"
#include "care/convert/covariance.h"
#include "care/convert/resume_state.h"

namespace care::convert {
namespace {

// Wᵀ·C·W in float64 as two row-split products, T = C·W then Wᵀ·T, each
// thread one serial GEMM on its block of output rows. Eigen's parallel GEMM
// waits at a barrier per panel; on the shared 2-core machine its spinning
// was a third of the float64 GEMM time of the 1B conversion (the float32
// Linear was changed the same way before; docs/performance.md, "Against
// PyTorch").
Eigen::MatrixXd Gram(const MatrixRM& w, const Eigen::MatrixXd& c) {
  const Eigen::MatrixXd wd = w.cast<double>();  // [D, out]
  const int64_t d = wd.rows(), out = wd.cols();
  Eigen::MatrixXd t(d, out);    // [D, out] C·W
  Eigen::MatrixXd g(out, out);  // [out, out] Wᵀ·C·W
  // Row blocks of whole 4-row groups (Eigen's double register blocking);
  // inside the region each GEMM runs on its thread alone.
  auto split = [](int64_t rows, int64_t part, int64_t parts) {
    const int64_t groups = (rows + 3) / 4;
    return std::min(rows, groups * part / parts * 4);
  };
#pragma omp parallel
  {
    const int64_t i = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t r0 = split(d, i, n), r1 = split(d, i + 1, n);
    if (r1 > r0)
      t.middleRows(r0, r1 - r0).noalias() = c.middleRows(r0, r1 - r0) * wd;
#pragma omp barrier
    const int64_t o0 = split(out, i, n), o1 = split(out, i + 1, n);
    if (o1 > o0) {
      g.middleRows(o0, o1 - o0).noalias() =
          wd.middleCols(o0, o1 - o0).transpose() * t;
    }
  }
  return g;
}

// Wᵀ·C_h·W with C_h = (1/N)·Σ xᵀx over the N rows of x, computed as
// (X·W)ᵀ(X·W)/N in float64: for N below D this is far cheaper than forming
// C_h (D²·N) and then Wᵀ·C_h·W (two [out, D]·[D, D]-sized products), and
// it rounds less. The held-out covariance is needed for nothing else.
absl::StatusOr<std::pair<Eigen::MatrixXd, Eigen::MatrixXd>> RowGrams(
    const Eigen::Ref<const MatrixRM>& x, const MatrixRM& w_k,
    const MatrixRM& w_v) {
  if (!x.allFinite()) {
    return absl::InvalidArgumentError(
        "held-out activations contain NaN or inf");
  }
  const Eigen::MatrixXd xd = x.cast<double>();  // [N, D]
  const double n = std::max<Eigen::Index>(1, x.rows());
  const Eigen::MatrixXd pk = xd * w_k.cast<double>();  // [N, g·d_h]
  const Eigen::MatrixXd pv = xd * w_v.cast<double>();  // [N, g·d_h]
  return std::make_pair(Eigen::MatrixXd(pk.transpose() * pk / n),
                        Eigen::MatrixXd(pv.transpose() * pv / n));
}

// Wᵀ·C·W with C = (1/N)·Σ xᵀx as (X·W)ᵀ(X·W)/N: a [N, D]·[D, out] float32
// product (cpu_gemm::GemmOnThreads) and the
// Gram of its rows in 256-row float32 blocks summed in float64 (the
// covariance's accumulation). For the Gram route this replaces forming C
// (N·D² float32) and then Wᵀ·C·W in float64 for K and V: at the 1B shape
// (N 8,192, D 2,048, out 512) that was ~0.45 s of a layer's ~0.6 s fit on
// two cores, serial copies of C included (docs/performance.md, "Against
// PyTorch").
absl::StatusOr<Eigen::MatrixXd> ProjectedGram(
    const Eigen::Ref<const MatrixRM>& x, const MatrixRM& w) {
  const int64_t n = x.rows(), out = w.cols();
  MatrixRM p(n, out);  // [N, out] = x · w
  compute::cpu_gemm::GemmOnThreads({.m = n,
                                    .n = out,
                                    .k = x.cols(),
                                    .a = x.data(),
                                    .lda = x.outerStride(),
                                    .b = w.data(),
                                    .ldb = w.cols(),
                                    .c = p.data(),
                                    .ldc = out},
                                   /*transpose_b=*/false);
  CovarianceAccumulator gram(out);
  CARE_RETURN_IF_ERROR(gram.Add(p));
  return gram.Covariance();  // [out, out]
}

// diag C and mean |x| of the rows of x in float64, for the Gram route,
// which needs no more of C.
absl::StatusOr<LayerStatistics> DiagonalStatistics(
    const Eigen::Ref<const MatrixRM>& x) {
  LayerStatistics stats;
  stats.tokens = x.rows();
  Eigen::VectorXd sq = Eigen::VectorXd::Zero(x.cols());
  Eigen::VectorXd abs = Eigen::VectorXd::Zero(x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const auto row = x.row(r).transpose().cast<double>();  // [D]
    sq += row.cwiseAbs2();
    abs += row.cwiseAbs();
  }
  if (!sq.allFinite()) {
    return absl::InvalidArgumentError(
        "calibration activations contain NaN or inf");
  }
  const double inv = 1.0 / static_cast<double>(std::max<int64_t>(1, x.rows()));
  stats.diagonal = sq * inv;
  stats.mean_abs = abs * inv;
  return stats;
}

// Calibration rows first, held-out rows after, as one engine batch.
engine::TokenWindows Batch(const CalibrationWindows& windows) {
  engine::TokenWindows all = windows.calib;
  all.ids.insert(all.ids.end(), windows.heldout.ids.begin(),
                 windows.heldout.ids.end());
  all.num_windows += windows.heldout.num_windows;
  return all;
}

std::vector<int32_t> BatchTargets(const CalibrationWindows& windows) {
  std::vector<int32_t> targets(windows.calib.tokens(), -1);
  targets.insert(targets.end(), windows.heldout_targets.begin(),
                 windows.heldout_targets.end());
  return targets;
}

// Covariances of the calibration and held-out rows of x, the layer's
// weights, Grams and decomposition.
struct FittedLayer {
  LayerDecomposition decomposition;
  LayerGrams grams;
};

absl::StatusOr<FittedLayer> FitLayer(const ModelConfig& config,
                                     const TensorSource& weights, int64_t l,
                                     const Eigen::Ref<const MatrixRM>& x,
                                     int64_t cal_tokens,
                                     const FactorizeOptions& options) {
  // x: [tokens, D], calibration rows first.
  const int64_t d = config.hidden_size;
  CARE_ASSIGN_OR_RETURN(LayerWeights w, LoadLayerWeights(config, weights, l));
  FittedLayer out;
  LayerStatistics stats;
  const auto cal_rows = x.topRows(cal_tokens);
  if (GramRouteApplies(options) && w.w_k.cols() <= d && w.w_v.cols() <= d) {
    // The Gram route needs diag C and the two Grams, not C itself.
    CARE_ASSIGN_OR_RETURN(stats, DiagonalStatistics(cal_rows));
    CARE_ASSIGN_OR_RETURN(out.grams.calib_k, ProjectedGram(cal_rows, w.w_k));
    CARE_ASSIGN_OR_RETURN(out.grams.calib_v, ProjectedGram(cal_rows, w.w_v));
  } else {
    CovarianceAccumulator cal(d);
    CARE_RETURN_IF_ERROR(cal.Add(cal_rows));
    stats = {cal.Covariance(), cal.MeanAbs(), cal.tokens()};
    out.grams.calib_k = Gram(w.w_k, stats.covariance);
    out.grams.calib_v = Gram(w.w_v, stats.covariance);
  }
  if (x.rows() > cal_tokens) {  // held-out rows (empty Grams without)
    CARE_ASSIGN_OR_RETURN(
        auto held, RowGrams(x.bottomRows(x.rows() - cal_tokens), w.w_k, w.w_v));
    out.grams.heldout_k = std::move(held.first);
    out.grams.heldout_v = std::move(held.second);
  }
  absl::StatusOr<LayerDecomposition> dec = DecomposeLayer(
      std::move(w), stats, options, &out.grams.calib_k, &out.grams.calib_v);
  if (!dec.ok()) {
    return Annotate(dec.status(), absl::StrCat("decomposing layer ", l));
  }
  out.decomposition = *std::move(dec);
  return out;
}

// FitLayer on the k/v input rows `xb`: read in place when the backend's
// matrices are host memory (CPU), else downloaded first. The copy cost a
// fresh, zeroed [tokens, D] buffer per layer (64 MB at 8,192 × 2,048).
absl::StatusOr<FittedLayer> FitLayerOn(compute::Backend& backend,
                                       const ModelConfig& config,
                                       const TensorSource& weights, int64_t l,
                                       const compute::Matrix& xb,
                                       int64_t cal_tokens,
                                       const FactorizeOptions& options) {
  if (backend.kind() == compute::DeviceKind::kCpu) {
    const Eigen::Map<const MatrixRM> x(xb.data, xb.rows, xb.cols);
    return FitLayer(config, weights, l, x, cal_tokens, options);
  }
  CARE_ASSIGN_OR_RETURN(MatrixRM x, engine::DownloadMatrix(backend, xb));
  return FitLayer(config, weights, l, x, cal_tokens, options);
}

// Restores saved calibration state: the whole pass (all layers and the
// held-out score; returns true), or layers 0..k-1 and the hidden states at
// layer k (`start`). Anything missing or unusable means starting over.
bool Restore(const ResumeState& state, const ModelConfig& config,
             int64_t tokens, DecomposedModel* out,
             std::optional<SavedHidden>* start) {
  const int64_t layers = config.num_hidden_layers;
  auto load_prefix = [&](int64_t n) {
    for (int64_t l = 0; l < n; ++l) {
      std::optional<SavedLayer> saved = state.LoadLayer(l, config.kv_width());
      if (!saved) {
        out->layers.clear();
        out->grams.clear();
        return false;
      }
      out->layers.push_back(std::move(saved->decomposition));
      out->grams.push_back(std::move(saved->grams));
    }
    return true;
  };
  if (std::optional<std::vector<double>> done =
          state.LoadValues("calibrated", 2)) {
    if (load_prefix(layers)) {
      out->heldout_original = {(*done)[0], static_cast<int64_t>((*done)[1])};
      out->resumed_layers = layers;
      ResumeLog(absl::StrCat("calibration of all ", layers,
                             " layers restored from ", state.dir()));
      return true;
    }
  }
  std::optional<SavedHidden> hidden =
      state.LoadHidden(tokens, config.hidden_size);
  if (!hidden || hidden->next_layer < 1 || hidden->next_layer > layers) {
    return false;
  }
  if (!load_prefix(hidden->next_layer)) {
    ResumeLog(absl::StrCat("a layer below the snapshot at layer ",
                           hidden->next_layer, " is unusable; starting over"));
    return false;
  }
  out->resumed_layers = hidden->next_layer;
  ResumeLog(absl::StrCat("resuming calibration at layer ", hidden->next_layer,
                         " of ", layers, " from ", state.dir()));
  *start = std::move(hidden);
  return false;
}

// Wraps the pass's hooks: each fitted layer drops its weights (and is saved
// with `resume`); with `resume`, the hidden states are snapshotted when the
// time since the last snapshot is at least 10x what that one cost (bounded
// overhead and bounded loss), and always when the pass is being stopped.
void PersistAndDropWeights(engine::LayerHooks& hooks, DecomposedModel& out,
                           ResumeState* resume, int64_t layers,
                           compute::Backend& backend) {
  hooks.on_kv_input = [inner = std::move(hooks.on_kv_input), &out, resume](
                          int64_t l, const auto& x) -> absl::Status {
    CARE_RETURN_IF_ERROR(inner(l, x));
    out.layers.back().weights = {};
    if (resume != nullptr) {
      absl::Status saved =
          resume->SaveLayer(l, out.layers.back(), out.grams.back());
      if (!saved.ok()) {
        ResumeLog(absl::StrCat("cannot save layer ", l, ": ", saved.message()));
      }
    }
    return absl::OkStatus();
  };
  if (resume != nullptr) AddHiddenSnapshots(hooks, *resume, layers, backend);
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
    const LayerCallback& after_layer, ResumeState* resume) {
  if (windows.calib.seq_len != windows.heldout.seq_len) {
    return absl::InvalidArgumentError(
        "calibration and held-out windows differ in length");
  }
  const int64_t cal_tokens = windows.calib.tokens();
  DecomposedModel out;
  std::optional<SavedHidden> start;
  if (resume != nullptr &&
      Restore(*resume, config,
              windows.calib.tokens() + windows.heldout.tokens(), &out,
              &start)) {
    return out;
  }
  CARE_ASSIGN_OR_RETURN(auto forward,
                        engine::LayerwiseForward::Create(
                            config, weights, Batch(windows), engine_options));
  if (start) {
    CARE_RETURN_IF_ERROR(forward->SeekLayer(start->next_layer, start->hidden));
    start.reset();
  }
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t l,
                          const compute::Matrix& xb) -> absl::Status {
    const auto t0 = std::chrono::steady_clock::now();
    CARE_ASSIGN_OR_RETURN(FittedLayer f,
                          FitLayerOn(forward->backend(), config, weights, l, xb,
                                     cal_tokens, options));
    out.layers.push_back(std::move(f.decomposition));
    out.grams.push_back(std::move(f.grams));
    out.decompose_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    return absl::OkStatus();
  };
  if (after_layer) {
    hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
      return after_layer(l);
    };
  }
  PersistAndDropWeights(hooks, out, resume, config.num_hidden_layers,
                        forward->backend());
  const int64_t layers = config.num_hidden_layers;
  if (windows.heldout.num_windows > 0) {
    CARE_RETURN_IF_ERROR(forward->RunLayers(layers, hooks));
    const std::vector<int32_t> targets = BatchTargets(windows);
    CARE_ASSIGN_OR_RETURN(out.heldout_original, forward->ScoreTargets(targets));
  } else {
    // Nothing is scored: the pass ends at the last layer's k/v input (no
    // attention or MLP of that layer, no final norm or vocabulary head).
    CARE_RETURN_IF_ERROR(forward->RunLayers(layers - 1, hooks));
    CARE_RETURN_IF_ERROR(forward->ObserveKvInput(hooks));
    if (after_layer) CARE_RETURN_IF_ERROR(after_layer(layers - 1));
  }
  if (resume != nullptr) {
    absl::Status saved = resume->SaveValues(
        "calibrated", {out.heldout_original.sum,
                       static_cast<double>(out.heldout_original.count)});
    if (!saved.ok()) ResumeLog(saved.message());
    resume->DropHidden();  // the pass is complete: the layers suffice
  }
  return out;
}

absl::StatusOr<SequentialModel> SequentialRefit(
    const ModelConfig& config, const TensorSource& weights,
    const CalibrationWindows& windows, const FactorizeOptions& options,
    const std::vector<int64_t>& rank_k, const std::vector<int64_t>& rank_v,
    const engine::EngineOptions& engine_options,
    const LayerCallback& after_layer) {
  const int64_t layers = config.num_hidden_layers;
  if (static_cast<int64_t>(rank_k.size()) != layers ||
      static_cast<int64_t>(rank_v.size()) != layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequential: ranks for ", rank_k.size(), "/",
                     rank_v.size(), " layers, model has ", layers));
  }
  const int64_t cal_tokens = windows.calib.tokens();
  SequentialModel out;
  CARE_ASSIGN_OR_RETURN(auto forward,
                        engine::LayerwiseForward::Create(
                            config, weights, Batch(windows), engine_options));
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t l,
                          const compute::Matrix& xb) -> absl::Status {
    CARE_ASSIGN_OR_RETURN(FittedLayer f,
                          FitLayerOn(forward->backend(), config, weights, l, xb,
                                     cal_tokens, options));
    CARE_ASSIGN_OR_RETURN(LatentLayer layer,
                          TruncateLayer(f.decomposition, rank_k[l], rank_v[l]));
    out.layers.push_back(std::move(layer));
    f.decomposition.weights = {};  // the factors are all that is kept
    out.decompositions.push_back(std::move(f.decomposition));
    out.grams.push_back(std::move(f.grams));
    return absl::OkStatus();
  };
  // Layer l runs with its freshly fitted factors, so layer l+1 sees the
  // converted model's hidden states.
  hooks.make_kv_projector =
      [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
    return out.layers[l].MakeProjector();
  };
  if (after_layer) {
    hooks.on_layer_output = [&](int64_t l, const compute::Matrix&) {
      return after_layer(l);
    };
  }
  CARE_RETURN_IF_ERROR(forward->RunLayers(layers, hooks));
  CARE_ASSIGN_OR_RETURN(out.heldout_converted,
                        forward->ScoreTargets(BatchTargets(windows)));
  return out;
}

}  // namespace care::convert
