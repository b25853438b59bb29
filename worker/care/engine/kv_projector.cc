#include "care/engine/kv_projector.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

absl::StatusOr<MatrixRM> LoadMatrix(const TensorSource& source,
                                    const std::string& name, int64_t rows,
                                    int64_t cols) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {rows, cols}));
  return MatrixRM(t.matrix());
}

absl::StatusOr<Eigen::RowVectorXf> LoadVector(const TensorSource& source,
                                              const std::string& name,
                                              int64_t n) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {n}));
  return Eigen::RowVectorXf(
      Eigen::Map<const Eigen::RowVectorXf>(t.data.data(), n));
}

// out = x·Wᵀ (+ bias): [tokens, out].
void Linear(const MatrixRM& x, const MatrixRM& w,
            const std::optional<Eigen::RowVectorXf>& bias, MatrixRM* out) {
  out->resize(x.rows(), w.rows());
  out->noalias() = x * w.transpose();
  if (bias.has_value()) out->rowwise() += *bias;
}

absl::Status CheckInput(const MatrixRM& x, int64_t d, const char* what) {
  if (x.cols() != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " K/V projector input has ", x.cols(), " columns, expected ", d));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LatentRank(const std::vector<int>& ranks, int64_t layer,
                                   int64_t max_rank, const char* field) {
  if (layer >= static_cast<int64_t>(ranks.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("latent config lists ", ranks.size(), " ", field,
                     " entries; layer ", layer, " has none"));
  }
  const int64_t r = ranks[layer];
  if (r < 1 || r > max_rank) {
    return absl::InvalidArgumentError(
        absl::StrCat("latent ", field, "[", layer, "] = ", r,
                     " is outside [1, ", max_rank, "]"));
  }
  return r;
}

}  // namespace

DenseKvProjector::DenseKvProjector(MatrixRM w_k, MatrixRM w_v,
                                   std::optional<Eigen::RowVectorXf> b_k,
                                   std::optional<Eigen::RowVectorXf> b_v)
    : w_k_(std::move(w_k)),
      w_v_(std::move(w_v)),
      b_k_(std::move(b_k)),
      b_v_(std::move(b_v)) {}

absl::Status DenseKvProjector::Project(const MatrixRM& x, MatrixRM* k,
                                       MatrixRM* v) const {
  CARE_RETURN_IF_ERROR(CheckInput(x, w_k_.cols(), "dense"));
  Linear(x, w_k_, b_k_, k);  // [tokens, g * d_h]
  Linear(x, w_v_, b_v_, v);  // [tokens, g * d_h]
  return absl::OkStatus();
}

LatentKvProjector::LatentKvProjector(MatrixRM a_k, MatrixRM b_k, MatrixRM a_v,
                                     MatrixRM b_v,
                                     std::optional<Eigen::RowVectorXf> bias_k,
                                     std::optional<Eigen::RowVectorXf> bias_v)
    : a_k_(std::move(a_k)),
      b_k_(std::move(b_k)),
      a_v_(std::move(a_v)),
      b_v_(std::move(b_v)),
      bias_k_(std::move(bias_k)),
      bias_v_(std::move(bias_v)) {}

absl::Status LatentKvProjector::Project(const MatrixRM& x, MatrixRM* k,
                                        MatrixRM* v) const {
  CARE_RETURN_IF_ERROR(CheckInput(x, a_k_.cols(), "latent"));
  MatrixRM latent;
  latent.noalias() = x * a_k_.transpose();  // c_K: [tokens, r_K]
  Linear(latent, b_k_, bias_k_, k);         // [tokens, g * d_h]
  latent.noalias() = x * a_v_.transpose();  // c_V: [tokens, r_V]
  Linear(latent, b_v_, bias_v_, v);         // [tokens, g * d_h]
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KvProjector>> LoadKvProjector(
    const ModelConfig& config, const TensorSource& source, int64_t layer) {
  const int64_t D = config.hidden_size, kv = config.kv_width();
  namespace n = io::names;
  if (config.latent.has_value()) {
    CARE_ASSIGN_OR_RETURN(
        int64_t r_k, LatentRank(config.latent->rank_k, layer, kv, "rank_k"));
    CARE_ASSIGN_OR_RETURN(
        int64_t r_v, LatentRank(config.latent->rank_v, layer, kv, "rank_v"));
    CARE_ASSIGN_OR_RETURN(MatrixRM a_k,
                          LoadMatrix(source, n::KAProj(layer), r_k, D));
    CARE_ASSIGN_OR_RETURN(MatrixRM b_k,
                          LoadMatrix(source, n::KBProj(layer), kv, r_k));
    CARE_ASSIGN_OR_RETURN(MatrixRM a_v,
                          LoadMatrix(source, n::VAProj(layer), r_v, D));
    CARE_ASSIGN_OR_RETURN(MatrixRM b_v,
                          LoadMatrix(source, n::VBProj(layer), kv, r_v));
    std::optional<Eigen::RowVectorXf> bias_k, bias_v;
    if (source.Has(n::KBBias(layer))) {
      CARE_ASSIGN_OR_RETURN(bias_k, LoadVector(source, n::KBBias(layer), kv));
    }
    if (source.Has(n::VBBias(layer))) {
      CARE_ASSIGN_OR_RETURN(bias_v, LoadVector(source, n::VBBias(layer), kv));
    }
    return std::make_unique<LatentKvProjector>(
        std::move(a_k), std::move(b_k), std::move(a_v), std::move(b_v),
        std::move(bias_k), std::move(bias_v));
  }
  CARE_ASSIGN_OR_RETURN(MatrixRM w_k,
                        LoadMatrix(source, n::KProj(layer), kv, D));
  CARE_ASSIGN_OR_RETURN(MatrixRM w_v,
                        LoadMatrix(source, n::VProj(layer), kv, D));
  std::optional<Eigen::RowVectorXf> b_k, b_v;
  if (config.attention_bias) {
    CARE_ASSIGN_OR_RETURN(b_k, LoadVector(source, n::KBias(layer), kv));
    CARE_ASSIGN_OR_RETURN(b_v, LoadVector(source, n::VBias(layer), kv));
  }
  return std::make_unique<DenseKvProjector>(std::move(w_k), std::move(w_v),
                                            std::move(b_k), std::move(b_v));
}

}  // namespace care::engine
