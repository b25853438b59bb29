// A dense float32 tensor in row-major order: the form in which every stage
// of the pipeline consumes weights (checkpoints store F32/F16/BF16; loading
// converts).
#ifndef CARE_IO_TENSOR_H_
#define CARE_IO_TENSOR_H_

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace care {

// Row-major matrices match the HF [out, in] weight layout byte for byte.
using MatrixRM =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRMd =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // Row-major; size == numel().

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Views a 2-D tensor [rows, cols] (a 1-D tensor as [1, n]).
  Eigen::Map<const MatrixRM> matrix() const {
    return {data.data(), shape.size() == 2 ? shape[0] : 1,
            shape.empty() ? 1 : shape.back()};
  }
  Eigen::Map<MatrixRM> matrix() {
    return {data.data(), shape.size() == 2 ? shape[0] : 1,
            shape.empty() ? 1 : shape.back()};
  }
};

// "[a, b, c]" for error messages.
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace care

#endif  // CARE_IO_TENSOR_H_
