// Row-major float32 GEMMs for the CPU backend's hot products, dispatched at
// run time to the widest kernel this CPU runs: Eigen compiled for
// x86-64-v4 (AVX-512) where the CPU and OS support it, else the build's
// baseline (x86-64-v3). The binary stays runnable on any x86-64-v3 host; on
// AVX-512 hosts the GEMM runs ~1.9× faster per core (docs/performance.md,
// "Against PyTorch"). `CARE_CPU_ISA=avx2` forces the baseline (A/B runs);
// `avx512` asks for the wide kernel and falls back where it cannot run.
//
// GemmNT / GemmNN run on the calling thread; GemmOnThreads splits one
// product across the OpenMP threads (what the backend's Linear runs).
#ifndef CARE_COMPUTE_CPU_GEMM_H_
#define CARE_COMPUTE_CPU_GEMM_H_

#include <cstdint>

namespace care::compute::cpu_gemm {

// C [m, n] (leading dimension ldc) = C·accumulate + A [m, k] (lda) · op(B):
// op(B) = Bᵀ with B [n, k] (ldb) for GemmNT, B [k, n] (ldb) for GemmNN.
struct Gemm {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};

enum class Isa { kBaseline, kAvx512 };

// The kernel set in use: ChooseIsa(getenv("CARE_CPU_ISA")), once.
Isa ActiveIsa();
// `forced`: the CARE_CPU_ISA value or null. "avx2"/"baseline" force the
// baseline; anything else picks AVX-512 where IsaRuns(kAvx512).
Isa ChooseIsa(const char* forced);
// Whether this build has the kernels and this CPU (and OS) runs them.
bool IsaRuns(Isa isa);
// "avx512" or "baseline".
const char* IsaName(Isa isa);

// `isa` defaults to ActiveIsa(); one this host cannot run means the baseline.
void GemmNT(const Gemm& g, Isa isa = ActiveIsa());
void GemmNN(const Gemm& g, Isa isa = ActiveIsa());

// g on the OpenMP threads, one GemmNT (transpose_b) or GemmNN per block of
// output columns or of rows, or on this thread when the product is too
// small to split or the caller is already inside a parallel region. Eigen's
// own parallel GEMM shares packed panels between threads and waits at a
// barrier per panel (8.7 % of a conversion's cycles on 2 cores;
// docs/performance.md "Against PyTorch"). Every path runs the same kernel
// with the same k order per element, so the split never changes the bits.
void GemmOnThreads(const Gemm& g, bool transpose_b);

}  // namespace care::compute::cpu_gemm

#endif  // CARE_COMPUTE_CPU_GEMM_H_
