// The dispatched float GEMMs (cpu_gemm.h) against float64 references, on
// every kernel set this host runs (baseline always; AVX-512 where the CPU
// has it), with padded leading dimensions and both accumulate modes.
#include "care/compute/cpu_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

namespace care::compute::cpu_gemm {
namespace {

std::vector<Isa> RunnableIsas() {
  std::vector<Isa> out = {Isa::kBaseline};
  if (IsaRuns(Isa::kAvx512)) out.push_back(Isa::kAvx512);
  return out;
}

std::vector<float> Random(int64_t n, std::mt19937* rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

// Checks C against Σ_k a·b in float64. Any summation order of k float32
// products stays within (k + 2)·2⁻²⁴·Σ_k |a·b| of the exact sum (the
// standard γ_k bound, plus the accumulated C term's rounding).
void CheckProduct(bool transpose_b, Isa isa) {
  std::mt19937 rng(7);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                         {7, 13, 5},
                         {33, 65, 129},
                         {300, 257, 70},
                         {64, 48, 512}}) {
    for (bool accumulate : {false, true}) {
      const int64_t lda = k + 3, ldc = n + 5;
      const int64_t ldb = transpose_b ? k + 1 : n + 2;
      const int64_t b_rows = transpose_b ? n : k;
      const std::vector<float> a = Random(m * lda, &rng);
      const std::vector<float> b = Random(b_rows * ldb, &rng);
      std::vector<float> c = Random(m * ldc, &rng);
      const std::vector<float> c0 = c;
      const Gemm g{.m = m,
                   .n = n,
                   .k = k,
                   .a = a.data(),
                   .lda = lda,
                   .b = b.data(),
                   .ldb = ldb,
                   .c = c.data(),
                   .ldc = ldc,
                   .accumulate = accumulate};
      if (transpose_b) {
        GemmNT(g, isa);
      } else {
        GemmNN(g, isa);
      }
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < ldc; ++j) {
          const float got = c[i * ldc + j];
          if (j >= n) {  // padding past n stays as it was
            ASSERT_EQ(got, c0[i * ldc + j]) << i << "," << j;
            continue;
          }
          double exact = accumulate ? c0[i * ldc + j] : 0.0, mag = 0;
          for (int64_t p = 0; p < k; ++p) {
            const double bv = transpose_b ? b[j * ldb + p] : b[p * ldb + j];
            exact += double{a[i * lda + p]} * bv;
            mag += std::abs(double{a[i * lda + p]} * bv);
          }
          if (accumulate) mag += std::abs(double{c0[i * ldc + j]});
          const double bound = (k + 2) * std::ldexp(1.0, -24) * mag + 1e-30;
          ASSERT_LE(std::abs(got - exact), bound)
              << IsaName(isa) << " m " << m << " n " << n << " k " << k
              << " accumulate " << accumulate << " at " << i << "," << j;
        }
      }
    }
  }
}

TEST(CpuGemmTest, TransposedBMatchesDoubleReference) {
  for (Isa isa : RunnableIsas()) CheckProduct(true, isa);
}

TEST(CpuGemmTest, PlainBMatchesDoubleReference) {
  for (Isa isa : RunnableIsas()) CheckProduct(false, isa);
}

TEST(CpuGemmTest, EmptyProductsTouchNothing) {
  float c = 3.0f;
  for (Isa isa : RunnableIsas()) {
    GemmNT({.m = 0, .n = 1, .k = 4, .c = &c, .ldc = 1}, isa);
    GemmNN({.m = 1, .n = 0, .k = 4, .c = &c, .ldc = 1}, isa);
    EXPECT_EQ(c, 3.0f);
  }
}

TEST(CpuGemmTest, EnvironmentForcesTheBaseline) {
  EXPECT_EQ(ChooseIsa("avx2"), Isa::kBaseline);
  EXPECT_EQ(ChooseIsa("baseline"), Isa::kBaseline);
  const Isa best = IsaRuns(Isa::kAvx512) ? Isa::kAvx512 : Isa::kBaseline;
  EXPECT_EQ(ChooseIsa(nullptr), best);
  EXPECT_EQ(ChooseIsa("avx512"), best);
  EXPECT_TRUE(IsaRuns(Isa::kBaseline));
}

}  // namespace
}  // namespace care::compute::cpu_gemm
