// Loading checkpoint tensors into a compute backend: projection weights as
// compute::Weight (from an io::Checkpoint straight from the stored BF16/F16/
// F32 bytes, no intermediate float copy), 1-D norms and biases as [1, n]
// matrices, and a background loader that converts the next layer's weights
// while the current one computes.
#ifndef CARE_ENGINE_WEIGHT_LOADER_H_
#define CARE_ENGINE_WEIGHT_LOADER_H_

#include <cstdint>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/io/tensor_source.h"

namespace care::engine {

// Tensor `name` with shape [rows, cols] as a backend weight. Errors name the
// tensor, the expected shape and the file.
absl::StatusOr<compute::Weight> LoadWeightOn(compute::Backend& backend,
                                             const TensorSource& source,
                                             const std::string& name,
                                             int64_t rows, int64_t cols);

// Rows [begin, end) of the 2-D tensor `name` [rows, cols] as a backend
// weight [end - begin, cols] (lm_head vocabulary chunks). From a checkpoint
// only those rows' bytes are read, and their mapped pages are released
// afterwards (ReleaseMappedPages), so a large head never becomes resident.
absl::StatusOr<compute::Weight> LoadWeightRowsOn(compute::Backend& backend,
                                                 const TensorSource& source,
                                                 const std::string& name,
                                                 int64_t rows, int64_t cols,
                                                 int64_t begin, int64_t end);

// Rows order[0], order[1], .. of the 2-D tensor `name` [rows, cols] as a
// backend weight [order.size(), cols] (rows regrouped or split, e.g.
// DeepSeek's q_pe rows moved ahead of q_nope). From a checkpoint the rows'
// stored bytes are copied in their dtype (a bf16 tensor stays bf16).
absl::StatusOr<compute::Weight> LoadWeightRowsInOrderOn(
    compute::Backend& backend, const TensorSource& source,
    const std::string& name, int64_t rows, int64_t cols,
    const std::vector<int64_t>& order);

// 1-D tensor `name` [n] as a [1, n] backend matrix (norm weights, biases).
absl::StatusOr<compute::Matrix> LoadRowOn(compute::Backend& backend,
                                          const TensorSource& source,
                                          const std::string& name, int64_t n);

// A 2-D weight to load ahead: name and expected [rows, cols].
struct WeightRequest {
  std::string name;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Weights loaded ahead of use, by name. Start() begins loading a list on a
// background thread (Backend::LoadWeight is allowed to run concurrently with
// ops); Take() hands a weight over (waiting for the load to finish) or
// returns nullopt-like NotFound when it was not requested, so the caller
// loads it synchronously. One batch at a time.
class WeightPrefetch {
 public:
  WeightPrefetch() = default;
  ~WeightPrefetch();
  WeightPrefetch(const WeightPrefetch&) = delete;
  WeightPrefetch& operator=(const WeightPrefetch&) = delete;

  // Starts loading `requests` (tensors absent from the source are skipped).
  void Start(compute::Backend& backend, const TensorSource& source,
             std::vector<WeightRequest> requests);
  // The prefetched weight `name` if it was requested and loaded with the
  // same shape; NotFound otherwise (also when loading it failed: the caller's
  // synchronous load then reports the error with full context).
  absl::StatusOr<compute::Weight> Take(const std::string& name, int64_t rows,
                                       int64_t cols);
  // Waits for the batch and drops what was not taken.
  void Clear();

 private:
  void Wait();

  std::future<std::map<std::string, compute::Weight>> pending_;
  std::map<std::string, compute::Weight> ready_;
};

}  // namespace care::engine

#endif  // CARE_ENGINE_WEIGHT_LOADER_H_
