#include "gemm_ceiling.h"

#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "care/io/tensor.h"

namespace care::bench {

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

GemmCeiling MeasureGemmCeiling(const std::vector<int>& sizes, bool verbose) {
  using Clock = std::chrono::steady_clock;
  GemmCeiling best;
  best.threads = Eigen::nbThreads();
  for (int n : sizes) {
    MatrixRM a = MatrixRM::Random(n, n);
    MatrixRM b = MatrixRM::Random(n, n);
    MatrixRM c(n, n);
    c.noalias() = a * b;  // warm-up
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = Clock::now();
      const double c0 = CpuSeconds();
      c.noalias() = a * b;
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      const double gflop = 2.0 * n * n * n / 1e9;
      best.wall_gflops = std::max(best.wall_gflops, gflop / s);
      best.cpu_gflops = std::max(best.cpu_gflops, gflop / (CpuSeconds() - c0));
    }
    if (verbose) {
      std::printf(
          "  gemm %d^3 on %d threads: best so far %.1f GFLOP/s wall, %.1f per "
          "CPU-s\n",
          n, best.threads, best.wall_gflops, best.cpu_gflops);
    }
  }
  return best;
}

}  // namespace care::bench
