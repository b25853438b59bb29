// Launch geometry of the CUDA backend's elementwise kernels
// (elementwise.cu, train_elementwise.cu): blocks of kThreads threads and
// grid-stride loops over int64 indices, so any shape fits one launch.
// Included by .cu files only (device code).
#ifndef CARE_COMPUTE_CUDA_GRID_STRIDE_H_
#define CARE_COMPUTE_CUDA_GRID_STRIDE_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace care::compute::cuda {

inline constexpr int kThreads = 256;

// Blocks for n elements at kThreads per block, at most 2^20 (grid-stride
// beyond that).
inline unsigned int Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::clamp<int64_t>(b, 1, 1 << 20));
}

// for (int64_t i = GlobalIndex(); i < n; i += GridStride()) ...
__device__ __forceinline__ int64_t GlobalIndex() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace care::compute::cuda

#endif  // CARE_COMPUTE_CUDA_GRID_STRIDE_H_
