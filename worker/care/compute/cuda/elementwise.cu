// Memory-bound kernels of the CUDA backend: RMSNorm, RoPE, SiLU·mul,
// residual/bias adds, bf16 conversion, row gather/scatter, and the Gram
// accumulation helpers. Grid-stride loops over int64 indices so any shape
// fits one launch (grid_stride.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "care/compute/cuda/bf16.h"
#include "care/compute/cuda/grid_stride.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

// One block per (row, group): sum of squares in double, then scale.
__global__ void RmsNormKernel(const float* x, const float* w, float* y,
                              int64_t groups, int64_t cols, int64_t width,
                              double eps) {
  const int64_t row = blockIdx.x / groups, g = blockIdx.x % groups;
  const float* xs = x + row * cols + g * width;
  float* ys = y + row * cols + g * width;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const double v = xs[i];
    ss += v * v;
  }
  __shared__ double partial[32];
  for (int off = 16; off > 0; off >>= 1) {
    ss += __shfl_down_sync(0xffffffffu, ss, off);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = ss;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) / 32;
    ss = lane < warps ? partial[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) {
      ss += __shfl_down_sync(0xffffffffu, ss, off);
    }
    if (lane == 0) partial[0] = ss;
  }
  __syncthreads();
  // Every read of xs happened before the barrier above, so y may alias x.
  const float scale = static_cast<float>(rsqrt(partial[0] / width + eps));
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    ys[i] = xs[i] * scale * w[i];
  }
}

__global__ void RopeKernel(const float* cos, const float* sin, int64_t seq_len,
                           int64_t half, int64_t head_dim, float* x,
                           int64_t rows, int64_t heads) {
  const int64_t total = rows * heads * half;
  for (int64_t idx = GlobalIndex(); idx < total; idx += GridStride()) {
    const int64_t i = idx % half;
    const int64_t h = (idx / half) % heads;
    const int64_t t = idx / (half * heads);
    const int64_t p = t % seq_len;
    float* v = x + t * heads * head_dim + h * head_dim;
    const float c = cos[p * half + i], s = sin[p * half + i];
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

__global__ void SiluMulKernel(float* gate, const float* up, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void AddKernel(const float* x, float* y, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) y[i] += x[i];
}

__global__ void AddRowKernel(const float* b, float* y, int64_t rows,
                             int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) y[i] += b[i % cols];
}

__global__ void ScaleKernel(float* y, float s, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) y[i] *= s;
}

__global__ void F32ToBf16Kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    y[i] = F32ToBf16Bits(x[i]);
  }
}

__global__ void Bf16ToF32Kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    y[i] = Bf16BitsToF32(x[i]);
  }
}

// One block per output row.
__global__ void GatherRowsKernel(const float* x, const int64_t* ids,
                                 int64_t cols, float* out) {
  const float* src = x + ids[blockIdx.x] * cols;
  float* dst = out + static_cast<int64_t>(blockIdx.x) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

__global__ void ScatterRowsKernel(const float* y, const int64_t* ids,
                                  const float* weights, int64_t cols,
                                  float* out, bool accumulate) {
  const float w = weights ? weights[blockIdx.x] : 1.0f;
  const float* src = y + static_cast<int64_t>(blockIdx.x) * cols;
  float* dst = out + ids[blockIdx.x] * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dst[c] = accumulate ? dst[c] + w * src[c] : w * src[c];
  }
}

__global__ void SumRowGroupsKernel(const float* x, int64_t groups, int64_t k,
                                   int64_t cols, float* y) {
  const int64_t n = groups * cols;
  for (int64_t idx = GlobalIndex(); idx < n; idx += GridStride()) {
    const int64_t t = idx / cols, c = idx % cols;
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) s += x[(t * k + j) * cols + c];
    y[idx] = s;
  }
}

__global__ void AccumulateLowerKernel(const float* block, int64_t dim,
                                      double* sum) {
  const int64_t n = dim * dim;
  for (int64_t idx = GlobalIndex(); idx < n; idx += GridStride()) {
    const int64_t j = idx / dim, i = idx % dim;  // column-major (i, j)
    if (i >= j) sum[idx] += static_cast<double>(block[idx]);
  }
}

// One thread per column: reads are coalesced across the threads of a warp.
__global__ void AbsColumnSumsKernel(const float* x, int64_t rows, int64_t cols,
                                    double* abs_sum) {
  const int64_t c = GlobalIndex();
  if (c >= cols) return;
  double s = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    s += fabs(static_cast<double>(x[r * cols + c]));
  }
  abs_sum[c] += s;
}

__global__ void CountNonFiniteKernel(const float* x, int64_t n,
                                     unsigned long long* count) {
  unsigned long long bad = 0;
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    if (!isfinite(x[i])) ++bad;
  }
  if (bad != 0) atomicAdd(count, bad);
}

__global__ void FillKernel(float* x, float value, int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) x[i] = value;
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y,
                          int64_t rows, int64_t cols, int64_t width, double eps,
                          cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t groups = cols / width;
  const int threads = static_cast<int>(
      std::clamp<int64_t>((width + 31) / 32 * 32, 32, kThreads));
  RmsNormKernel<<<static_cast<unsigned int>(rows * groups), threads, 0,
                  stream>>>(x, w, y, groups, cols, width, eps);
  return cudaGetLastError();
}

cudaError_t LaunchRope(const float* cos, const float* sin, int64_t seq_len,
                       int64_t rotary_dim, int64_t head_dim, float* x,
                       int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t heads = cols / head_dim, half = rotary_dim / 2;
  const int64_t n = rows * heads * half;
  if (n == 0) return cudaSuccess;
  RopeKernel<<<Blocks(n), kThreads, 0, stream>>>(cos, sin, seq_len, half,
                                                 head_dim, x, rows, heads);
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(float* gate, const float* up, int64_t n,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SiluMulKernel<<<Blocks(n), kThreads, 0, stream>>>(gate, up, n);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(const float* x, float* y, int64_t n,
                      cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AddKernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t LaunchAddRow(const float* b, float* y, int64_t rows, int64_t cols,
                         cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  AddRowKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(b, y, rows, cols);
  return cudaGetLastError();
}

cudaError_t LaunchScale(float* y, float s, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ScaleKernel<<<Blocks(n), kThreads, 0, stream>>>(y, s, n);
  return cudaGetLastError();
}

cudaError_t LaunchF32ToBf16(const float* x, Bf16Bits* y, int64_t n,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  F32ToBf16Kernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t LaunchBf16ToF32(const Bf16Bits* x, float* y, int64_t n,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  Bf16ToF32Kernel<<<Blocks(n), kThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const float* x, const int64_t* ids, int64_t n,
                             int64_t cols, float* out, cudaStream_t stream) {
  if (n == 0 || cols == 0) return cudaSuccess;
  GatherRowsKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(
      x, ids, cols, out);
  return cudaGetLastError();
}

cudaError_t LaunchScatterRows(const float* y, const int64_t* ids,
                              const float* weights, int64_t n, int64_t cols,
                              float* out, bool accumulate,
                              cudaStream_t stream) {
  if (n == 0 || cols == 0) return cudaSuccess;
  ScatterRowsKernel<<<static_cast<unsigned int>(n), kThreads, 0, stream>>>(
      y, ids, weights, cols, out, accumulate);
  return cudaGetLastError();
}

cudaError_t LaunchSumRowGroups(const float* x, int64_t groups, int64_t k,
                               int64_t cols, float* y, cudaStream_t stream) {
  if (groups * cols == 0) return cudaSuccess;
  SumRowGroupsKernel<<<Blocks(groups * cols), kThreads, 0, stream>>>(
      x, groups, k, cols, y);
  return cudaGetLastError();
}

cudaError_t LaunchAccumulateLower(const float* block, int64_t dim, double* sum,
                                  cudaStream_t stream) {
  if (dim == 0) return cudaSuccess;
  AccumulateLowerKernel<<<Blocks(dim * dim), kThreads, 0, stream>>>(block, dim,
                                                                    sum);
  return cudaGetLastError();
}

cudaError_t LaunchAbsColumnSums(const float* x, int64_t rows, int64_t cols,
                                double* abs_sum, cudaStream_t stream) {
  if (cols == 0) return cudaSuccess;
  constexpr int kColumnThreads = 64;
  const auto blocks =
      static_cast<unsigned int>((cols + kColumnThreads - 1) / kColumnThreads);
  AbsColumnSumsKernel<<<blocks, kColumnThreads, 0, stream>>>(x, rows, cols,
                                                             abs_sum);
  return cudaGetLastError();
}

cudaError_t LaunchCountNonFinite(const float* x, int64_t n,
                                 unsigned long long* count,
                                 cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  CountNonFiniteKernel<<<Blocks(n), kThreads, 0, stream>>>(x, n, count);
  return cudaGetLastError();
}

cudaError_t LaunchFill(float* x, float value, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  FillKernel<<<Blocks(n), kThreads, 0, stream>>>(x, value, n);
  return cudaGetLastError();
}

}  // namespace care::compute::cuda
