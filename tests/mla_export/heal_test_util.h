// Shared setups of the healing tests (heal_layer_test, heal_backend_test):
// random layers of the healing problem (heal_layer.h) and the recovery
// problem both loops are run on.
#ifndef CARE_TESTS_MLA_EXPORT_HEAL_TEST_UTIL_H_
#define CARE_TESTS_MLA_EXPORT_HEAL_TEST_UTIL_H_

#include <cstdint>
#include <random>

#include "care/convert/mla_export/heal_layer.h"

namespace care::convert::testing {

using mla::HealAttention;
using mla::HealMatrix;
using mla::HealParams;
using mla::HealShape;

// [rows, cols] of N(0, sigma²) draws (drawn in double, then cast).
template <typename S>
HealMatrix<S> Gaussian(int64_t rows, int64_t cols, double sigma,
                       std::mt19937_64& rng);

// The fixed parts of a layer of shape s and windows of t_len tokens: the
// export's RoPE tables (θ_i = 10000^(−2i/R)), scale (d_h + R)^-1/2 and a
// random o_proj (sigma 0.5).
template <typename S>
HealAttention<S> RandomAttention(const HealShape& s, int64_t t_len,
                                 std::mt19937_64& rng);

// Random parameters of shape s, every entry N(0, sigma²).
template <typename S>
HealParams<S> RandomParams(const HealShape& s, double sigma,
                           std::mt19937_64& rng);

// Targets from a teacher layer of the same form (shape {2, 4, 4, 4, 8},
// windows of kT = 16 tokens, 48 training and 8 held-out windows) and a
// start that perturbs every teacher weight by 30 % of its block's RMS; the
// same draws (seed 11) in float and double.
template <typename S>
struct HealRecoveryProblem {
  static constexpr int64_t kT = 16;
  HealShape shape{2, 4, 4, 4, 8};
  HealAttention<S> a;
  HealMatrix<S> x_train, x_held, y_train, y_held;
  HealParams<S> start;
};

template <typename S>
HealRecoveryProblem<S> MakeRecoveryProblem();

}  // namespace care::convert::testing

#endif  // CARE_TESTS_MLA_EXPORT_HEAL_TEST_UTIL_H_
