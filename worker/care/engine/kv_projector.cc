#include "care/engine/kv_projector.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/io/tensor_names.h"

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

// out = x·Wᵀ (+ bias): [tokens, w.rows], allocated here.
absl::Status LinearNew(compute::Backend& be, const compute::Matrix& x,
                       const compute::Weight& w,
                       const std::optional<compute::Matrix>& bias,
                       compute::Matrix* out) {
  CARE_ASSIGN_OR_RETURN(*out, be.Allocate(x.rows, w.rows));
  return be.Linear(x, w, bias.has_value() ? &*bias : nullptr, out, false);
}

absl::StatusOr<compute::Weight> HostWeight(compute::Backend& be,
                                           const MatrixRM& m) {
  return be.LoadWeight({.dtype = compute::DType::kF32,
                        .rows = m.rows(),
                        .cols = m.cols(),
                        .data = m.data()});
}

absl::StatusOr<std::optional<compute::Matrix>> HostRow(
    compute::Backend& be, const std::optional<Eigen::RowVectorXf>& v) {
  if (!v.has_value()) return std::optional<compute::Matrix>();
  CARE_ASSIGN_OR_RETURN(compute::Matrix m, be.Upload(v->data(), 1, v->size()));
  return std::optional<compute::Matrix>(std::move(m));
}

absl::Status CheckInput(const compute::Matrix& x, int64_t d, const char* what) {
  if (x.cols != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " K/V projector input has ", x.cols, " columns, expected ", d));
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

DenseKvProjector::DenseKvProjector(compute::Weight w_k, compute::Weight w_v,
                                   std::optional<compute::Matrix> b_k,
                                   std::optional<compute::Matrix> b_v)
    : w_k_(std::move(w_k)),
      w_v_(std::move(w_v)),
      b_k_(std::move(b_k)),
      b_v_(std::move(b_v)) {}

absl::Status DenseKvProjector::Project(compute::Backend& backend,
                                       const compute::Matrix& x,
                                       compute::Matrix* k,
                                       compute::Matrix* v) const {
  CARE_RETURN_IF_ERROR(CheckInput(x, w_k_.cols, "dense"));
  CARE_RETURN_IF_ERROR(
      LinearNew(backend, x, w_k_, b_k_, k));    // [tokens, g*d_h]
  return LinearNew(backend, x, w_v_, b_v_, v);  // [tokens, g*d_h]
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

absl::StatusOr<const LatentKvProjector::OnBackend*> LatentKvProjector::Loaded(
    compute::Backend& be) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (loaded_for_ == &be) return &loaded_;
  OnBackend o;
  CARE_ASSIGN_OR_RETURN(o.a_k, HostWeight(be, a_k_));
  CARE_ASSIGN_OR_RETURN(o.b_k, HostWeight(be, b_k_));
  CARE_ASSIGN_OR_RETURN(o.a_v, HostWeight(be, a_v_));
  CARE_ASSIGN_OR_RETURN(o.b_v, HostWeight(be, b_v_));
  CARE_ASSIGN_OR_RETURN(o.bias_k, HostRow(be, bias_k_));
  CARE_ASSIGN_OR_RETURN(o.bias_v, HostRow(be, bias_v_));
  loaded_ = std::move(o);
  loaded_for_ = &be;
  return &loaded_;
}

absl::Status LatentKvProjector::Project(compute::Backend& backend,
                                        const compute::Matrix& x,
                                        compute::Matrix* k,
                                        compute::Matrix* v) const {
  CARE_RETURN_IF_ERROR(CheckInput(x, a_k_.cols(), "latent"));
  CARE_ASSIGN_OR_RETURN(const OnBackend* w, Loaded(backend));
  const std::optional<compute::Matrix> none;
  compute::Matrix latent;
  CARE_RETURN_IF_ERROR(
      LinearNew(backend, x, w->a_k, none, &latent));  // c_K: [tokens, r_K]
  CARE_RETURN_IF_ERROR(
      LinearNew(backend, latent, w->b_k, w->bias_k, k));  // [tokens, g*d_h]
  CARE_RETURN_IF_ERROR(
      LinearNew(backend, x, w->a_v, none, &latent));  // c_V: [tokens, r_V]
  return LinearNew(backend, latent, w->b_v, w->bias_v, v);  // [tokens, g*d_h]
}

SplitKvProjector::SplitKvProjector(std::unique_ptr<KvProjector> first,
                                   std::unique_ptr<KvProjector> second,
                                   int64_t split_row)
    : first_(std::move(first)),
      second_(std::move(second)),
      split_row_(split_row) {}

absl::Status SplitKvProjector::Project(compute::Backend& backend,
                                       const compute::Matrix& x,
                                       compute::Matrix* k,
                                       compute::Matrix* v) const {
  return ProjectRows(backend, x, 0, k, v);
}

absl::Status SplitKvProjector::ProjectRows(compute::Backend& backend,
                                           const compute::Matrix& x,
                                           int64_t row0, compute::Matrix* k,
                                           compute::Matrix* v) const {
  if (row0 + x.rows <= split_row_) {
    return first_->ProjectRows(backend, x, row0, k, v);
  }
  if (row0 >= split_row_) {
    return second_->ProjectRows(backend, x, row0 - split_row_, k, v);
  }
  // The rows straddle the split: each model projects its part.
  const int64_t n1 = split_row_ - row0, n2 = x.rows - n1;
  compute::Matrix k1, v1, k2, v2;
  CARE_RETURN_IF_ERROR(first_->ProjectRows(backend, compute::RowsView(x, 0, n1),
                                           row0, &k1, &v1));  // [n1, kv]
  CARE_RETURN_IF_ERROR(second_->ProjectRows(
      backend, compute::RowsView(x, n1, n2), 0, &k2, &v2));  // [n2, kv]
  if (k1.cols != k2.cols || v1.cols != v2.cols) {
    return absl::InternalError(absl::StrCat(
        "split K/V projection: the two models' K/V widths differ (", k1.cols,
        "/", v1.cols, " and ", k2.cols, "/", v2.cols, ")"));
  }
  for (auto [parts, out] :
       {std::pair<std::pair<compute::Matrix*, compute::Matrix*>,
                  compute::Matrix*>{{&k1, &k2}, k},
        {{&v1, &v2}, v}}) {
    CARE_ASSIGN_OR_RETURN(*out, backend.Allocate(x.rows, parts.first->cols));
    compute::Matrix top = compute::RowsView(*out, 0, n1);
    compute::Matrix bottom = compute::RowsView(*out, n1, n2);
    CARE_RETURN_IF_ERROR(backend.Copy(*parts.first, &top));
    CARE_RETURN_IF_ERROR(backend.Copy(*parts.second, &bottom));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KvProjector>> LoadKvProjector(
    const ModelConfig& config, const TensorSource& source, int64_t layer,
    compute::Backend& backend, WeightPrefetch* prefetch) {
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
  auto get = [&](const std::string& name) -> absl::StatusOr<compute::Weight> {
    if (prefetch != nullptr) {
      auto w = prefetch->Take(name, kv, D);
      if (w.ok()) return w;
    }
    return LoadWeightOn(backend, source, name, kv, D);
  };
  CARE_ASSIGN_OR_RETURN(compute::Weight w_k, get(n::KProj(layer)));
  CARE_ASSIGN_OR_RETURN(compute::Weight w_v, get(n::VProj(layer)));
  std::optional<compute::Matrix> b_k, b_v;
  if (config.attention_bias) {
    CARE_ASSIGN_OR_RETURN(b_k, LoadRowOn(backend, source, n::KBias(layer), kv));
    CARE_ASSIGN_OR_RETURN(b_v, LoadRowOn(backend, source, n::VBias(layer), kv));
  }
  return std::make_unique<DenseKvProjector>(std::move(w_k), std::move(w_v),
                                            std::move(b_k), std::move(b_v));
}

}  // namespace care::engine
