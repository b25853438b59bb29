// Elementwise kernels of the training ops (backend.h "training"): rotary
// embedding in both conventions and directions, axpby, the deterministic
// squared distance, the column-block adjoint of CopyColumns and Adam.
// Grid-stride loops over int64 indices (grid_stride.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "care/compute/cuda/grid_stride.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

__global__ void RotaryKernel(const float* cos, const float* sin,
                             int64_t seq_len, int64_t half, int64_t head_dim,
                             int64_t first_step, int64_t partner, float sign,
                             float* x, int64_t rows, int64_t heads) {
  const int64_t total = rows * heads * half;
  for (int64_t idx = GlobalIndex(); idx < total; idx += GridStride()) {
    const int64_t i = idx % half;
    const int64_t h = (idx / half) % heads;
    const int64_t t = idx / (half * heads);
    const int64_t p = t % seq_len;
    float* v = x + t * heads * head_dim + h * head_dim;
    const float c = cos[p * half + i], s = sign * sin[p * half + i];
    const float a = v[i * first_step], b = v[i * first_step + partner];
    v[i * first_step] = a * c - b * s;
    v[i * first_step + partner] = b * c + a * s;
  }
}

__global__ void AxpbyKernel(float alpha, const float* x, float beta, float* y,
                            int64_t n) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    y[i] = beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y[i];
  }
}

// Block sums of (a - b)² in double (shared-memory tree, fixed order).
__global__ void SquaredDistancePartialKernel(const float* a, const float* b,
                                             int64_t n, double* partials) {
  __shared__ double sum[kThreads];
  double s = 0.0;
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  sum[threadIdx.x] = s;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off >>= 1) {
    if (threadIdx.x < off) sum[threadIdx.x] += sum[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sum[0];
}

__global__ void SumPartialsKernel(const double* partials, int n, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += partials[i];
    *out = s;
  }
}

__global__ void AddColumnsKernel(const float* src, int64_t src_cols,
                                 int64_t src_col0, int64_t src_stride,
                                 float* dst, int64_t dst_cols, int64_t dst_col0,
                                 int64_t dst_stride, int64_t rows,
                                 int64_t groups, int64_t width) {
  const int64_t total = rows * width;
  for (int64_t idx = GlobalIndex(); idx < total; idx += GridStride()) {
    const int64_t r = idx / width, j = idx % width;
    const float* s = src + r * src_cols + src_col0 + j;
    float* d = dst + r * dst_cols + dst_col0 + j;
    // One thread owns (r, j) of every group: with dst_stride 0 it sums the
    // groups in order, with no other thread writing that element.
    for (int64_t g = 0; g < groups; ++g) d[g * dst_stride] += s[g * src_stride];
  }
}

__global__ void AdamKernel(const float* grad, float* param, float* m1,
                           float* m2, int64_t n, float lr, float b1, float b2,
                           float ob1, float ob2, float c1, float c2, float eps,
                           float gs) {
  for (int64_t i = GlobalIndex(); i < n; i += GridStride()) {
    const float g = grad[i] * gs;
    const float a1 = b1 * m1[i] + ob1 * g;
    const float a2 = b2 * m2[i] + ob2 * (g * g);
    m1[i] = a1;
    m2[i] = a2;
    param[i] -= lr * (a1 / c1) / (sqrtf(a2 / c2) + eps);
  }
}

}  // namespace

cudaError_t LaunchRotary(const float* cos, const float* sin, int64_t seq_len,
                         int64_t rotary_dim, int64_t head_dim, bool interleaved,
                         bool inverse, float* x, int64_t rows, int64_t cols,
                         cudaStream_t stream) {
  const int64_t heads = cols / head_dim, half = rotary_dim / 2;
  const int64_t n = rows * heads * half;
  if (n == 0) return cudaSuccess;
  RotaryKernel<<<Blocks(n), kThreads, 0, stream>>>(
      cos, sin, seq_len, half, head_dim, interleaved ? 2 : 1,
      interleaved ? 1 : half, inverse ? -1.0f : 1.0f, x, rows, heads);
  return cudaGetLastError();
}

cudaError_t LaunchAxpby(float alpha, const float* x, float beta, float* y,
                        int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AxpbyKernel<<<Blocks(n), kThreads, 0, stream>>>(alpha, x, beta, y, n);
  return cudaGetLastError();
}

cudaError_t LaunchSquaredDistance(const float* a, const float* b, int64_t n,
                                  double* partials, double* out,
                                  cudaStream_t stream) {
  SquaredDistancePartialKernel<<<kSquaredDistanceBlocks, kThreads, 0, stream>>>(
      a, b, n, partials);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  SumPartialsKernel<<<1, 32, 0, stream>>>(partials, kSquaredDistanceBlocks,
                                          out);
  return cudaGetLastError();
}

cudaError_t LaunchAddColumns(const float* src, int64_t src_cols,
                             int64_t src_col0, int64_t src_stride, float* dst,
                             int64_t dst_cols, int64_t dst_col0,
                             int64_t dst_stride, int64_t rows, int64_t groups,
                             int64_t width, cudaStream_t stream) {
  const int64_t n = rows * width;
  if (n == 0 || groups == 0) return cudaSuccess;
  AddColumnsKernel<<<Blocks(n), kThreads, 0, stream>>>(
      src, src_cols, src_col0, src_stride, dst, dst_cols, dst_col0, dst_stride,
      rows, groups, width);
  return cudaGetLastError();
}

cudaError_t LaunchAdam(const float* grad, float* param, float* m1, float* m2,
                       int64_t n, float lr, float beta1, float beta2,
                       float one_minus_beta1, float one_minus_beta2,
                       float correction1, float correction2, float eps,
                       float grad_scale, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  AdamKernel<<<Blocks(n), kThreads, 0, stream>>>(
      grad, param, m1, m2, n, lr, beta1, beta2, one_minus_beta1,
      one_minus_beta2, correction1, correction2, eps, grad_scale);
  return cudaGetLastError();
}

}  // namespace care::compute::cuda
