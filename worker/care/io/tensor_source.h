// Named-tensor access, independent of where tensors live: a safetensors
// checkpoint on disk (checkpoint.h), or an in-memory map in tests.
#ifndef CARE_IO_TENSOR_SOURCE_H_
#define CARE_IO_TENSOR_SOURCE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/tensor.h"

namespace care {

class TensorSource {
 public:
  virtual ~TensorSource() = default;

  virtual bool Has(absl::string_view name) const = 0;
  // Shape without reading data; NotFound naming the tensor when absent.
  virtual absl::StatusOr<std::vector<int64_t>> Shape(
      absl::string_view name) const = 0;
  // Reads and converts to float32. Reads no other tensor.
  virtual absl::StatusOr<Tensor> LoadF32(absl::string_view name) const = 0;
  // Where the tensor lives, for error messages (a file path, or "memory").
  virtual std::string Location(absl::string_view name) const = 0;
  // Every tensor name, sorted.
  virtual std::vector<std::string> Names() const = 0;
};

// Loads `name` and checks its shape. A missing tensor or a shape mismatch is
// an error naming the tensor, the expected and actual shapes, and the file.
absl::StatusOr<Tensor> LoadChecked(const TensorSource& source,
                                   absl::string_view name,
                                   const std::vector<int64_t>& expected);

// A TensorSource over tensors held in memory (tests, synthetic models).
class InMemoryTensorSource : public TensorSource {
 public:
  void Add(std::string name, Tensor tensor);

  bool Has(absl::string_view name) const override;
  absl::StatusOr<std::vector<int64_t>> Shape(
      absl::string_view name) const override;
  absl::StatusOr<Tensor> LoadF32(absl::string_view name) const override;
  std::string Location(absl::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  std::map<std::string, Tensor, std::less<>> tensors_;
};

}  // namespace care

#endif  // CARE_IO_TENSOR_SOURCE_H_
