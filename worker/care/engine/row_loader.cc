#include "care/engine/row_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/io/checkpoint.h"
#include "care/io/dtype.h"

namespace care::engine {

namespace {

// The stored tensor when `source` is a checkpoint with a convertible dtype;
// nullopt means "load through TensorSource".
absl::StatusOr<std::optional<io::RawTensor>> RawIfCheckpoint(
    const TensorSource& source, const std::string& name, int64_t rows,
    int64_t cols) {
  const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
  if (ckpt == nullptr) return std::optional<io::RawTensor>();
  if (!ckpt->Has(name)) {
    return absl::NotFoundError(absl::StrCat("tensor '", name,
                                            "' is missing (expected shape [",
                                            rows, ", ", cols, "])"));
  }
  CARE_ASSIGN_OR_RETURN(io::RawTensor raw, ckpt->Raw(name));
  if (raw.shape != std::vector<int64_t>{rows, cols}) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "' in ", ckpt->Location(name), " has shape ",
        ShapeString(raw.shape), ", expected [", rows, ", ", cols, "]"));
  }
  if (!io::IsConvertibleToF32(raw.dtype)) return std::optional<io::RawTensor>();
  return std::optional<io::RawTensor>(raw);
}

// madvise(MADV_DONTNEED) on the whole pages inside [data, data + size).
void DropPages(const char* data, size_t size) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + size) / page * page;
  // Advisory: a failure only means the pages stay resident.
  if (last > first) {
    (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

// madvise(MADV_WILLNEED) on the pages covering [data, data + size): the
// kernel starts reading them from disk in the background.
void WillNeedPages(const char* data, size_t size) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = begin / page * page;
  if (size > 0) {
    (void)madvise(reinterpret_cast<void*>(first), begin + size - first,
                  MADV_WILLNEED);
  }
}

}  // namespace

absl::StatusOr<MatrixRM> LoadRows(const TensorSource& source,
                                  const std::string& name, int64_t rows,
                                  int64_t cols, int64_t begin, int64_t end) {
  if (begin < 0 || end > rows || begin > end) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows [", begin, ", ", end, ") of '", name,
                     "' are outside [0, ", rows, ")"));
  }
  CARE_ASSIGN_OR_RETURN(std::optional<io::RawTensor> raw,
                        RawIfCheckpoint(source, name, rows, cols));
  MatrixRM out(end - begin, cols);
  if (raw.has_value()) {
    const size_t row_bytes = cols * io::DTypeSize(raw->dtype);
    CARE_RETURN_IF_ERROR(io::ConvertToF32(raw->dtype,
                                          raw->bytes.data() + begin * row_bytes,
                                          out.size(), out.data()));
    DropPages(raw->bytes.data() + begin * row_bytes,
              out.size() * io::DTypeSize(raw->dtype));
    return out;
  }
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {rows, cols}));
  out = t.matrix().middleRows(begin, end - begin);
  return out;
}

absl::StatusOr<MatrixRM> GatherRows(const TensorSource& source,
                                    const std::string& name, int64_t rows,
                                    int64_t cols,
                                    const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("row id ", ids[i], " at position ", i,
                       " is outside [0, ", rows, ") of '", name, "'"));
    }
  }
  CARE_ASSIGN_OR_RETURN(std::optional<io::RawTensor> raw,
                        RawIfCheckpoint(source, name, rows, cols));
  const int64_t n = ids.size();
  MatrixRM out(n, cols);  // [ids, cols]
  if (raw.has_value()) {
    const size_t row_bytes = cols * io::DTypeSize(raw->dtype);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      // Cannot fail: the dtype was checked convertible above.
      (void)io::ConvertToF32(raw->dtype, raw->bytes.data() + ids[i] * row_bytes,
                             cols, out.data() + i * cols);
    }
    return out;
  }
  CARE_ASSIGN_OR_RETURN(Tensor t, LoadChecked(source, name, {rows, cols}));
  const auto table = t.matrix();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out.row(i) = table.row(ids[i]);
  return out;
}

void ReleaseMappedRange(const char* data, size_t size) {
  DropPages(data, size);
}

void ReleaseMappedPages(const TensorSource& source, const std::string& prefix) {
  const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
  if (ckpt == nullptr) return;
  for (const std::string& name : ckpt->Names()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    auto raw = ckpt->Raw(name);
    if (raw.ok()) DropPages(raw->bytes.data(), raw->bytes.size());
  }
}

void PrefetchMappedPages(const TensorSource& source,
                         const std::string& prefix) {
  const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
  if (ckpt == nullptr) return;
  for (const std::string& name : ckpt->Names()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    auto raw = ckpt->Raw(name);
    if (raw.ok()) WillNeedPages(raw->bytes.data(), raw->bytes.size());
  }
}

void ReleaseMappedTensor(const TensorSource& source, const std::string& name) {
  const auto* ckpt = dynamic_cast<const io::Checkpoint*>(&source);
  if (ckpt == nullptr) return;
  auto raw = ckpt->Raw(name);
  if (raw.ok()) DropPages(raw->bytes.data(), raw->bytes.size());
}

}  // namespace care::engine
