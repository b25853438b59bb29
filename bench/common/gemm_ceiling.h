// The fp32 GEMM ceiling every benchmark reports against, measured in the
// same run, and the CPU-time clock that makes figures fair on a shared box.
#ifndef CARE_BENCH_COMMON_GEMM_CEILING_H_
#define CARE_BENCH_COMMON_GEMM_CEILING_H_

#include <vector>

namespace care::bench {

// User + system CPU seconds of this process (all threads). On a shared
// machine, FLOPs per CPU-second is the fair efficiency measure: time slices
// lost to other processes do not count, spinning and serial parts do.
double CpuSeconds();

struct GemmCeiling {
  double wall_gflops = 0;  // GFLOP per wall second
  double cpu_gflops = 0;   // GFLOP per CPU second (all threads)
  int threads = 0;         // Eigen's thread count during the measurement
  const char* isa = "";    // the dispatched GEMM kernels (cpu_gemm.h)
};

// Best of three C = A·B on square float32 matrices of each size (the
// shapes the engine feeds Eigen are large and similar), on Eigen's current
// thread count (care::engine::SetEngineThreads), by Eigen's parallel GEMM
// and by the dispatched kernels split by rows (cpu_gemm.h); the faster.
// `verbose` prints the best so far after each size.
GemmCeiling MeasureGemmCeiling(const std::vector<int>& sizes, bool verbose);

}  // namespace care::bench

#endif  // CARE_BENCH_COMMON_GEMM_CEILING_H_
