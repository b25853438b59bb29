#include "care/engine/weight_loader.h"

#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/engine/row_loader.h"
#include "care/io/checkpoint.h"
#include "care/io/dtype.h"
#include "care/io/tensor.h"

namespace care::engine {

namespace {

std::optional<compute::DType> ComputeDType(io::DType dtype) {
  switch (dtype) {
    case io::DType::kF32:
      return compute::DType::kF32;
    case io::DType::kF16:
      return compute::DType::kF16;
    case io::DType::kBF16:
      return compute::DType::kBF16;
    default:
      return std::nullopt;
  }
}

}  // namespace

absl::StatusOr<compute::Weight> LoadWeightOn(compute::Backend& backend,
                                             const TensorSource& source,
                                             const std::string& name,
                                             int64_t rows, int64_t cols) {
  if (const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
      ckpt != nullptr && ckpt->Has(name)) {
    CARE_ASSIGN_OR_RETURN(io::RawTensor raw, ckpt->Raw(name));
    const std::vector<int64_t> expected =
        rows == 1 && raw.shape.size() == 1 ? std::vector<int64_t>{cols}
                                           : std::vector<int64_t>{rows, cols};
    if (raw.shape != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' in ", ckpt->Location(name), " has shape ",
          ShapeString(raw.shape), ", expected ", ShapeString(expected)));
    }
    if (std::optional<compute::DType> dt = ComputeDType(raw.dtype)) {
      absl::StatusOr<compute::Weight> w = backend.LoadWeight(
          {.dtype = *dt, .rows = rows, .cols = cols, .data = raw.bytes.data()});
      if (!w.ok()) {
        return Annotate(w.status(), absl::StrCat("loading '", name, "' on ",
                                                 backend.name()));
      }
      // The backend holds its own copy now: the tensor's mapped pages leave
      // the resident set at once rather than at the end of the layer (a
      // Qwen3-MoE layer maps 1.2 GB of experts). Page cache keeps them.
      ReleaseMappedRange(raw.bytes.data(), raw.bytes.size());
      return w;
    }
  }
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {rows, cols}));
  return backend.LoadWeight({.dtype = compute::DType::kF32,
                             .rows = rows,
                             .cols = cols,
                             .data = t.data.data()});
}

absl::StatusOr<compute::Weight> LoadWeightRowsOn(compute::Backend& backend,
                                                 const TensorSource& source,
                                                 const std::string& name,
                                                 int64_t rows, int64_t cols,
                                                 int64_t begin, int64_t end) {
  if (begin < 0 || end > rows || begin >= end) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows [", begin, ", ", end, ") of '", name,
                     "' are outside [0, ", rows, ") or empty"));
  }
  if (const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
      ckpt != nullptr && ckpt->Has(name)) {
    CARE_ASSIGN_OR_RETURN(io::RawTensor raw, ckpt->Raw(name));
    if (raw.shape != std::vector<int64_t>{rows, cols}) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' in ", ckpt->Location(name), " has shape ",
          ShapeString(raw.shape), ", expected [", rows, ", ", cols, "]"));
    }
    if (std::optional<compute::DType> dt = ComputeDType(raw.dtype)) {
      const size_t row_bytes = cols * io::DTypeSize(raw.dtype);
      const char* first = raw.bytes.data() + begin * row_bytes;
      CARE_ASSIGN_OR_RETURN(compute::Weight w,
                            backend.LoadWeight({.dtype = *dt,
                                                .rows = end - begin,
                                                .cols = cols,
                                                .data = first}));
      ReleaseMappedRange(first, (end - begin) * row_bytes);
      return w;
    }
  }
  CARE_ASSIGN_OR_RETURN(MatrixRM m,
                        LoadRows(source, name, rows, cols, begin, end));
  return backend.LoadWeight({.dtype = compute::DType::kF32,
                             .rows = m.rows(),
                             .cols = m.cols(),
                             .data = m.data()});
}

absl::StatusOr<compute::Weight> LoadWeightRowsInOrderOn(
    compute::Backend& backend, const TensorSource& source,
    const std::string& name, int64_t rows, int64_t cols,
    const std::vector<int64_t>& order) {
  for (int64_t r : order) {
    if (r < 0 || r >= rows) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row ", r, " of '", name, "' is outside [0, ", rows, ")"));
    }
  }
  const int64_t n = order.size();
  if (const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
      ckpt != nullptr && ckpt->Has(name)) {
    CARE_ASSIGN_OR_RETURN(io::RawTensor raw, ckpt->Raw(name));
    if (raw.shape != std::vector<int64_t>{rows, cols}) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' in ", ckpt->Location(name), " has shape ",
          ShapeString(raw.shape), ", expected [", rows, ", ", cols, "]"));
    }
    if (std::optional<compute::DType> dt = ComputeDType(raw.dtype)) {
      const size_t row_bytes = cols * io::DTypeSize(raw.dtype);
      std::vector<char> bytes(n * row_bytes);
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(bytes.data() + i * row_bytes,
                    raw.bytes.data() + order[i] * row_bytes, row_bytes);
      }
      ReleaseMappedRange(raw.bytes.data(), raw.bytes.size());
      return backend.LoadWeight(
          {.dtype = *dt, .rows = n, .cols = cols, .data = bytes.data()});
    }
  }
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {rows, cols}));
  std::vector<float> picked(n * cols);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(picked.data() + i * cols, t.data.data() + order[i] * cols,
                cols * sizeof(float));
  }
  return backend.LoadWeight({.dtype = compute::DType::kF32,
                             .rows = n,
                             .cols = cols,
                             .data = picked.data()});
}

absl::StatusOr<compute::Matrix> LoadRowOn(compute::Backend& backend,
                                          const TensorSource& source,
                                          const std::string& name, int64_t n) {
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {n}));
  return backend.Upload(t.data.data(), 1, n);
}

WeightPrefetch::~WeightPrefetch() { Clear(); }

void WeightPrefetch::Start(compute::Backend& backend,
                           const TensorSource& source,
                           std::vector<WeightRequest> requests) {
  Clear();
  pending_ = std::async(std::launch::async, [&backend, &source,
                                             requests = std::move(requests)]() {
    std::map<std::string, compute::Weight> out;
    for (const WeightRequest& r : requests) {
      if (!source.Has(r.name)) continue;
      auto w = LoadWeightOn(backend, source, r.name, r.rows, r.cols);
      if (w.ok()) out.emplace(r.name, *std::move(w));
    }
    return out;
  });
}

void WeightPrefetch::Wait() {
  if (pending_.valid()) {
    std::map<std::string, compute::Weight> got = pending_.get();
    ready_.merge(got);
  }
}

absl::StatusOr<compute::Weight> WeightPrefetch::Take(const std::string& name,
                                                     int64_t rows,
                                                     int64_t cols) {
  Wait();
  auto it = ready_.find(name);
  if (it == ready_.end() || it->second.rows != rows ||
      it->second.cols != cols) {
    return absl::NotFoundError(absl::StrCat("'", name, "' not prefetched"));
  }
  compute::Weight w = std::move(it->second);
  ready_.erase(it);
  return w;
}

void WeightPrefetch::Clear() {
  Wait();
  ready_.clear();
}

}  // namespace care::engine
