// Shared setup of the tests that run on every compute backend that opens
// (backend_contract_test, train_ops_test, mla_export/heal_backend_test):
// the parameter is the device; "cpu" always opens, another device skips
// with the reason when it does not (a failure under CARE_TEST_EXPECT_GPU=1,
// as scripts/gpu-check.sh sets).
#ifndef CARE_TESTS_COMPUTE_BACKEND_TEST_UTIL_H_
#define CARE_TESTS_COMPUTE_BACKEND_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "care/compute/backend.h"

namespace care::compute::testing {

using Host = std::vector<float>;

// n draws of N(0, scale²) from std::mt19937(seed).
Host Random(int64_t n, uint32_t seed, float scale = 1.0f);

// The double reference of CausalAttention (backend.h): per window and
// query head h (reading KV head h / (heads / kv_heads)),
// o = softmax(q kᵀ · scale, causal) v with scale = shape.scale or
// head_dim^-1/2; q [N, heads·head_dim], k [N, kv_heads·head_dim],
// v [N, kv_heads·value_dim], o [N, heads·value_dim] row-major.
std::vector<double> ReferenceCausalAttention(const AttentionShape& s,
                                             const std::vector<double>& q,
                                             const std::vector<double>& k,
                                             const std::vector<double>& v);

class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Opens backend GetParam() into be_, or skips / fails as above.
  void SetUp() override;

  // Host ↔ backend memory; a failure is a test failure.
  Matrix Up(const Host& h, int64_t rows, int64_t cols);
  Matrix Alloc(int64_t rows, int64_t cols);
  Host Down(const Matrix& m);

  std::unique_ptr<Backend> be_;
};

}  // namespace care::compute::testing

#endif  // CARE_TESTS_COMPUTE_BACKEND_TEST_UTIL_H_
