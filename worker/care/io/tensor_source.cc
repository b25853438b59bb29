#include "care/io/tensor_source.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace care {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<Tensor> LoadChecked(const TensorSource& source,
                                   absl::string_view name,
                                   const std::vector<int64_t>& expected) {
  if (!source.Has(name)) {
    return absl::NotFoundError(absl::StrCat("tensor '", name,
                                            "' is missing (expected shape ",
                                            ShapeString(expected), ")"));
  }
  CARE_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name));
  if (shape != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in ", source.Location(name), " has shape ",
        ShapeString(shape), ", expected ", ShapeString(expected)));
  }
  return source.LoadF32(name);
}

void InMemoryTensorSource::Add(std::string name, Tensor tensor) {
  tensors_[std::move(name)] = std::move(tensor);
}

bool InMemoryTensorSource::Has(absl::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

absl::StatusOr<std::vector<int64_t>> InMemoryTensorSource::Shape(
    absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found"));
  }
  return it->second.shape;
}

absl::StatusOr<Tensor> InMemoryTensorSource::LoadF32(
    absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found"));
  }
  return it->second;
}

std::string InMemoryTensorSource::Location(absl::string_view) const {
  return "memory";
}

std::vector<std::string> InMemoryTensorSource::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

}  // namespace care
