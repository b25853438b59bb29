// The x86-64-v4 (AVX-512) kernels of cpu_gemm.h. This file alone is compiled
// with -march=x86-64-v4 (CMakeLists.txt). Eigen's namespace is renamed for
// it: Eigen's templates are instantiated under the same names in every
// object, and the linker keeps one copy of each, so without the rename the
// baseline code could end up calling an AVX-512 instance (SIGILL on
// AVX2-only hosts). Include nothing here that instantiates shared templates.
#define EIGEN_DONT_PARALLELIZE  // one GEMM per calling thread
#define Eigen care_eigen_avx512
#include <Eigen/Core>

#include "care/compute/cpu_gemm.h"

#define CARE_GEMM_ISA avx512
#include "care/compute/cpu_gemm_kernels.inc"
