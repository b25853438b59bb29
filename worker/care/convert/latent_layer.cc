#include "care/convert/latent_layer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/io/tensor_names.h"

namespace care::convert {
namespace {

absl::StatusOr<Eigen::RowVectorXf> LoadBias(const TensorSource& source,
                                            const std::string& name,
                                            int64_t width) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {width}));
  return Eigen::Map<const Eigen::RowVectorXf>(t.data.data(), width);
}

}  // namespace

absl::StatusOr<LayerWeights> LoadLayerWeights(const ModelConfig& config,
                                              const TensorSource& source,
                                              int64_t layer) {
  const int64_t d = config.hidden_size;
  const int64_t out = config.kv_width();
  LayerWeights w;
  CARE_ASSIGN_OR_RETURN(Tensor k,
                        LoadChecked(source, io::names::KProj(layer), {out, d}));
  CARE_ASSIGN_OR_RETURN(Tensor v,
                        LoadChecked(source, io::names::VProj(layer), {out, d}));
  w.w_k = k.matrix().transpose();  // [D, g·d_h]
  w.w_v = v.matrix().transpose();  // [D, g·d_h]
  if (config.attention_bias) {
    CARE_ASSIGN_OR_RETURN(w.b_k,
                          LoadBias(source, io::names::KBias(layer), out));
    CARE_ASSIGN_OR_RETURN(w.b_v,
                          LoadBias(source, io::names::VBias(layer), out));
  }
  return w;
}

absl::StatusOr<LayerDecomposition> DecomposeLayer(
    LayerWeights weights, const LayerStatistics& stats,
    const FactorizeOptions& options, const Eigen::MatrixXd* calib_gram_k,
    const Eigen::MatrixXd* calib_gram_v) {
  LayerDecomposition out;
  const int64_t kv = weights.w_k.cols();
  const bool grams = calib_gram_k != nullptr && calib_gram_v != nullptr &&
                     GramRouteApplies(options) && kv <= weights.w_k.rows() &&
                     calib_gram_k->rows() == kv && calib_gram_k->cols() == kv &&
                     calib_gram_v->rows() == kv && calib_gram_v->cols() == kv;
  CARE_ASSIGN_OR_RETURN(Scaling s, grams ? ScalingInfoOnly(stats, options)
                                         : BuildScaling(stats, options));
  // (S·W)ᵀ(S·W) = Wᵀ(C + δI)W = WᵀCW + δ·WᵀW, [g·d_h, g·d_h].
  auto damped_gram = [&](const Eigen::MatrixXd& gram, const MatrixRM& w) {
    const Eigen::MatrixXd wd = w.cast<double>();  // [D, g·d_h]
    Eigen::MatrixXd g = gram;
    g.noalias() += s.info.damping_added * (wd.transpose() * wd);
    return DecomposeGram(g);
  };
  // K and V side by side, one thread each: their GEMMs then run single-
  // threaded (nested regions are serial) at the same total rate, while the
  // symmetric eigensolvers, which are mostly serial, overlap. Measured at the
  // 8B shape (bench/scale/decompose_bench): 1.26x with the cores shared with
  // other work, 1.03x on an idle machine.
  absl::StatusOr<Decomposition> k, v;
#pragma omp parallel sections num_threads(2)
  {
#pragma omp section
    k = s.deferred ? damped_gram(*calib_gram_k, weights.w_k)
                   : Decompose(s, weights.w_k);
#pragma omp section
    v = s.deferred ? damped_gram(*calib_gram_v, weights.w_v)
                   : Decompose(s, weights.w_v);
  }
  CARE_RETURN_IF_ERROR(k.status());
  CARE_RETURN_IF_ERROR(v.status());
  out.k = *std::move(k);
  out.v = *std::move(v);
  out.scaling = std::move(s.info);
  out.weights = std::move(weights);
  return out;
}

absl::StatusOr<LatentLayer> TruncateLayer(const LayerDecomposition& layer,
                                          const LayerWeights& weights,
                                          int64_t rank_k, int64_t rank_v) {
  if (weights.w_k.rows() == 0 ||
      weights.w_k.cols() != layer.k.right_vectors.rows() ||
      weights.w_v.rows() != weights.w_k.rows() ||
      weights.w_v.cols() != layer.v.right_vectors.rows()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "latent factors: weights W_K [", weights.w_k.rows(), ", ",
        weights.w_k.cols(), "], W_V [", weights.w_v.rows(), ", ",
        weights.w_v.cols(), "] do not fit the decomposition (",
        layer.k.right_vectors.rows(), " and ", layer.v.right_vectors.rows(),
        " outputs); dropped weights are re-read with LoadLayerWeights"));
  }
  LatentLayer out;
  CARE_ASSIGN_OR_RETURN(out.k, Truncate(layer.k, weights.w_k, rank_k));
  CARE_ASSIGN_OR_RETURN(out.v, Truncate(layer.v, weights.w_v, rank_v));
  out.b_k = weights.b_k;
  out.b_v = weights.b_v;
  return out;
}

absl::StatusOr<LatentLayer> TruncateLayer(const LayerDecomposition& layer,
                                          int64_t rank_k, int64_t rank_v) {
  return TruncateLayer(layer, layer.weights, rank_k, rank_v);
}

std::unique_ptr<engine::KvProjector> LatentLayer::MakeProjector() const {
  return std::make_unique<engine::LatentKvProjector>(KA(), KB(), VA(), VB(),
                                                     b_k, b_v);
}

}  // namespace care::convert
