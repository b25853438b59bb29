#include "care/compute/backend.h"

#include "absl/strings/str_cat.h"

namespace care::compute {

size_t DTypeBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 4;
}

Matrix RowsView(const Matrix& m, int64_t row0, int64_t n) {
  Matrix v;
  v.data = m.data == nullptr ? nullptr : m.data + row0 * m.cols;
  v.rows = n;
  v.cols = m.cols;
  v.storage = m.storage;
  return v;
}

absl::Status CheckShape(const char* op, const char* what, const Matrix& m,
                        int64_t rows, int64_t cols) {
  if (m.rows == rows && m.cols == cols) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", what, " is [", m.rows, ", ", m.cols,
                   "], expected [", rows, ", ", cols, "]"));
}

}  // namespace care::compute
