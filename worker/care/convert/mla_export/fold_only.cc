#include "care/convert/mla_export/fold_only.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "care/io/tensor_names.h"

namespace care::convert::mla {

ModelConfig FoldOnlyConfig(const ModelConfig& config) {
  ModelConfig out = config;
  out.qk_norm = false;
  return out;
}

FoldOnlySource::FoldOnlySource(const TensorSource& source,
                               const ModelConfig& config,
                               const std::vector<MlaLayer>& layers)
    : source_(source), config_(config), layers_(layers) {}

bool FoldOnlySource::Dropped(absl::string_view name) const {
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (name == io::names::QNorm(l) || name == io::names::KNorm(l)) {
      return true;
    }
  }
  return false;
}

bool FoldOnlySource::Has(absl::string_view name) const {
  return !Dropped(name) && source_.Has(name);
}

absl::StatusOr<std::vector<int64_t>> FoldOnlySource::Shape(
    absl::string_view name) const {
  if (Dropped(name)) {
    return absl::NotFoundError(absl::StrCat(name, " is folded away"));
  }
  return source_.Shape(name);
}

absl::StatusOr<Tensor> FoldOnlySource::LoadF32(absl::string_view name) const {
  if (Dropped(name)) {
    return absl::NotFoundError(absl::StrCat(name, " is folded away"));
  }
  absl::StatusOr<Tensor> t = source_.LoadF32(name);
  if (!t.ok()) return t;
  for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
    const MatrixRM* regression = nullptr;
    if (name == io::names::QProj(l)) regression = &layers_[l].q_regression;
    if (name == io::names::KProj(l)) regression = &layers_[l].k_regression;
    if (regression != nullptr && regression->size() > 0) {
      if (t->shape !=
          std::vector<int64_t>{regression->rows(), regression->cols()}) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, " has ", ShapeString(t->shape), ", the regression fold [",
            regression->rows(), ", ", regression->cols(), "]"));
      }
      t->data.assign(regression->data(),
                     regression->data() + regression->size());
      continue;
    }
    const Eigen::VectorXf* fold = nullptr;
    if (name == io::names::QProj(l)) fold = &layers_[l].q_fold;
    if (name == io::names::KProj(l)) fold = &layers_[l].k_fold;
    if (fold == nullptr || fold->size() == 0) continue;
    if (t->shape.size() != 2 || t->shape[0] != fold->size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " has ", ShapeString(t->shape), ", the fold ",
                       fold->size(), " rows"));
    }
    MatrixRM m = fold->asDiagonal() * t->matrix();  // [rows, D]
    t->data.assign(m.data(), m.data() + m.size());
  }
  return t;
}

std::string FoldOnlySource::Location(absl::string_view name) const {
  return absl::StrCat("q/k-norm-folded ", source_.Location(name));
}

std::vector<std::string> FoldOnlySource::Names() const {
  std::vector<std::string> names;
  for (const std::string& n : source_.Names()) {
    if (!Dropped(n)) names.push_back(n);
  }
  return names;
}

}  // namespace care::convert::mla
