// Run-time choice of the GEMM kernels (cpu_gemm.h) and the baseline ones.
#include "care/compute/cpu_gemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstring>

#define CARE_GEMM_ISA baseline
#include "care/compute/cpu_gemm_kernels.inc"

namespace care::compute::cpu_gemm {

#if defined(CARE_HAVE_AVX512_GEMM)
namespace avx512 {
void GemmNT(const Gemm& g);
void GemmNN(const Gemm& g);
}  // namespace avx512
#endif

bool IsaRuns(Isa isa) {
  if (isa == Isa::kBaseline) return true;
#if defined(CARE_HAVE_AVX512_GEMM)
  // x86-64-v4's AVX-512 F/BW/DQ/VL; libgcc's check includes the OS's XCR0
  // state for the zmm registers.
  static const bool runs = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return runs;
#else
  return false;
#endif
}

Isa ChooseIsa(const char* forced) {
  if (forced != nullptr && (std::strcmp(forced, "avx2") == 0 ||
                            std::strcmp(forced, "baseline") == 0)) {
    return Isa::kBaseline;
  }
  return IsaRuns(Isa::kAvx512) ? Isa::kAvx512 : Isa::kBaseline;
}

Isa ActiveIsa() {
  static const Isa isa = ChooseIsa(std::getenv("CARE_CPU_ISA"));
  return isa;
}

const char* IsaName(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : "baseline";
}

void GemmNT(const Gemm& g, Isa isa) {
  if (g.m == 0 || g.n == 0) return;
#if defined(CARE_HAVE_AVX512_GEMM)
  if (isa == Isa::kAvx512 && IsaRuns(isa)) return avx512::GemmNT(g);
#endif
  baseline::GemmNT(g);
}

void GemmNN(const Gemm& g, Isa isa) {
  if (g.m == 0 || g.n == 0) return;
#if defined(CARE_HAVE_AVX512_GEMM)
  if (isa == Isa::kAvx512 && IsaRuns(isa)) return avx512::GemmNN(g);
#endif
  baseline::GemmNN(g);
}

namespace {

// At least this many rows of the split operand per thread.
constexpr int64_t kMinRowsPerThread = 256;
// Below this many rows of A per thread the output columns (B's slice) are
// split instead of A's rows: every thread packs only its slice of B, where a
// row split has each thread pack all of it for few rows of products. At
// evaluation shapes (1,022 rows, 2 threads) packing the weight was ~4 % of a
// 1B conversion's cycles.
constexpr int64_t kColumnSplitRowsPerThread = 1024;

}  // namespace

void GemmOnThreads(const Gemm& g, bool transpose_b) {
  auto run = [transpose_b](const Gemm& part) {
    if (transpose_b) {
      GemmNT(part);
    } else {
      GemmNN(part);
    }
  };
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool by_columns = threads >= 2 &&
                          g.m < threads * kColumnSplitRowsPerThread &&
                          g.n >= threads * kMinRowsPerThread;
  const bool by_rows =
      threads >= 2 && !by_columns && g.m >= threads * kMinRowsPerThread;
  if (!by_columns && !by_rows) {
    run(g);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
    // Blocks of whole 8-row (or 8-column) groups (register blocking).
    const int64_t extent = by_columns ? g.n : g.m;
    const int64_t groups = (extent + 7) / 8;
    const int64_t i0 = std::min(extent, groups * t / k * 8);
    const int64_t i1 = std::min(extent, groups * (t + 1) / k * 8);
    if (i1 > i0) {
      Gemm part = g;
      if (by_columns) {  // C[:, i0:i1] (+)= A · op(B)[:, i0:i1]
        part.n = i1 - i0;
        part.b = g.b + (transpose_b ? i0 * g.ldb : i0);
        part.c = g.c + i0;
      } else {  // C[i0:i1] (+)= A[i0:i1] · op(B)
        part.m = i1 - i0;
        part.a = g.a + i0 * g.lda;
        part.c = g.c + i0 * g.ldc;
      }
      run(part);
    }
  }
}

}  // namespace care::compute::cpu_gemm
