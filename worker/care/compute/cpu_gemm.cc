// Run-time choice of the GEMM kernels (cpu_gemm.h) and the baseline ones.
#include "care/compute/cpu_gemm.h"

#include <Eigen/Core>
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

}  // namespace care::compute::cpu_gemm
