// Shared helpers of the GPU tests: open the CUDA backend (skip with a
// visible message when no device opens, fail under CARE_TEST_EXPECT_GPU=1),
// and move host vectors in and out of it.
#ifndef CARE_TESTS_COMPUTE_CUDA_CUDA_TEST_UTIL_H_
#define CARE_TESTS_COMPUTE_CUDA_CUDA_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/compute/cuda/stats.h"
#include "gtest/gtest.h"

namespace care::compute::testing {

// The process-wide CUDA backend, or nullptr with *why set.
Backend* CudaOrNull(std::string* why);
bool GpuExpected();

// Random values in [-1, 1) from a fixed seed.
std::vector<float> Random(int64_t n, uint32_t seed);
// The value bf16 rounding gives (round to nearest even).
float RoundBf16(float x);

// The plugin's counters (CareCudaBackendStats through dlsym on the loaded
// plugin); waits for all issued work.
absl::StatusOr<CareCudaStats> StatsOf(Backend* b);

Matrix Up(Backend& b, const std::vector<float>& host, int64_t rows,
          int64_t cols);
std::vector<float> Down(Backend& b, const Matrix& m);

}  // namespace care::compute::testing

#define CARE_CUDA_BACKEND_OR_SKIP(var)                                      \
  std::string care_cuda_why_;                                               \
  ::care::compute::Backend* var =                                           \
      ::care::compute::testing::CudaOrNull(&care_cuda_why_);                \
  if (var == nullptr) {                                                     \
    if (::care::compute::testing::GpuExpected()) {                          \
      FAIL() << "CARE_TEST_EXPECT_GPU=1 but: " << care_cuda_why_;           \
    }                                                                       \
    GTEST_SKIP() << "no CUDA device, GPU test skipped: " << care_cuda_why_; \
  }

#endif  // CARE_TESTS_COMPUTE_CUDA_CUDA_TEST_UTIL_H_
