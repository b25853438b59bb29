#include "gemm_ceiling.h"

#include <omp.h>
#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "care/compute/cpu_gemm.h"
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
  best.isa = compute::cpu_gemm::IsaName(compute::cpu_gemm::ActiveIsa());
  for (int n : sizes) {
    MatrixRM a = MatrixRM::Random(n, n);
    MatrixRM b = MatrixRM::Random(n, n);
    MatrixRM c(n, n);
    // Eigen's own parallel GEMM (baseline ISA) and the dispatched kernels
    // split across the threads as the backend runs them: the faster.
    for (bool split : {false, true}) {
      auto run = [&] {
        if (split) {
          compute::cpu_gemm::GemmOnThreads({.m = n,
                                            .n = n,
                                            .k = n,
                                            .a = a.data(),
                                            .lda = n,
                                            .b = b.data(),
                                            .ldb = n,
                                            .c = c.data(),
                                            .ldc = n},
                                           /*transpose_b=*/false);
        } else {
          c.noalias() = a * b;
        }
      };
      run();  // warm-up
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = Clock::now();
        const double c0 = CpuSeconds();
        run();
        const double s =
            std::chrono::duration<double>(Clock::now() - t0).count();
        const double gflop = 2.0 * n * n * n / 1e9;
        best.wall_gflops = std::max(best.wall_gflops, gflop / s);
        best.cpu_gflops =
            std::max(best.cpu_gflops, gflop / (CpuSeconds() - c0));
      }
    }
    if (verbose) {
      std::printf(
          "  gemm %d^3 on %d threads (%s kernels): best so far %.1f GFLOP/s "
          "wall, %.1f per CPU-s\n",
          n, best.threads, best.isa, best.wall_gflops, best.cpu_gflops);
    }
  }
  return best;
}

}  // namespace care::bench
