// Reductions over a row: the MoE router's softmax + top-k (one warp per
// token) and one vocabulary chunk of the running log-sum-exp used to score
// targets without materializing [tokens, vocab] (one block per row).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

constexpr int kMaxTopK = 64;
constexpr int kRouterWarps = 4;

__device__ __forceinline__ bool Better(double pa, int ia, double pb, int ib) {
  return pa != pb ? pa > pb : ia < ib;
}

// One warp per token; lane handles experts lane, lane + 32, ...
__global__ void RouterTopKKernel(const float* logits, int64_t tokens,
                                 int experts, int k, bool renormalize,
                                 int32_t* ids, float* weights) {
  const int lane = threadIdx.x & 31;
  const int64_t t =
      static_cast<int64_t>(blockIdx.x) * kRouterWarps + (threadIdx.x >> 5);
  if (t >= tokens) return;  // whole warp leaves together
  const float* row = logits + t * experts;
  float mx = -INFINITY;
  for (int e = lane; e < experts; e += 32) mx = fmaxf(mx, row[e]);
  for (int off = 16; off > 0; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  }
  double sum = 0.0;
  for (int e = lane; e < experts; e += 32) {
    sum += exp(static_cast<double>(row[e]) - mx);
  }
  for (int off = 16; off > 0; off >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, off);
  }
  int chosen[kMaxTopK];
  double chosen_p[kMaxTopK];
  double kept = 0.0;
  for (int j = 0; j < k; ++j) {
    double best_p = -1.0;
    int best_i = experts;
    for (int e = lane; e < experts; e += 32) {
      bool taken = false;
      for (int c = 0; c < j; ++c) taken |= chosen[c] == e;
      if (taken) continue;
      const double p = exp(static_cast<double>(row[e]) - mx) / sum;
      if (Better(p, e, best_p, best_i)) {
        best_p = p;
        best_i = e;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const double op = __shfl_xor_sync(0xffffffffu, best_p, off);
      const int oi = __shfl_xor_sync(0xffffffffu, best_i, off);
      if (Better(op, oi, best_p, best_i)) {
        best_p = op;
        best_i = oi;
      }
    }
    chosen[j] = best_i;
    chosen_p[j] = best_p;
    kept += best_p;  // summed in rank order, as on the CPU
  }
  if (lane == 0) {
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = chosen[j];
      weights[t * k + j] =
          static_cast<float>(renormalize ? chosen_p[j] / kept : chosen_p[j]);
    }
  }
}

constexpr int kRowThreads = 256;

template <typename T, typename Op>
__device__ T BlockReduce(T v, Op op, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  }
  __syncthreads();  // scratch reuse across calls
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int i = 1; i < kRowThreads / 32; ++i) v = op(v, scratch[i]);
  return v;
}

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};

__global__ void LogSumExpChunkKernel(const float* logits, int64_t chunk,
                                     int64_t v0, const int32_t* targets,
                                     float* run_max, double* run_sum,
                                     double* target_logit) {
  __shared__ float fscratch[kRowThreads / 32];
  __shared__ double dscratch[kRowThreads / 32];
  const int64_t r = blockIdx.x;
  const float* l = logits + r * chunk;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < chunk; j += blockDim.x) {
    mx = fmaxf(mx, l[j]);
  }
  const float old_max = run_max[r];
  const float m = fmaxf(old_max, BlockReduce(mx, MaxOp(), fscratch));
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < chunk; j += blockDim.x) {
    s += expf(l[j] - m);  // exp in float, summed in double (as on the CPU)
  }
  s = BlockReduce(s, SumOp(), dscratch);
  if (threadIdx.x == 0) {
    // exp(-inf - m) = 0 on the first chunk.
    run_sum[r] = run_sum[r] * exp(static_cast<double>(old_max) - m) + s;
    run_max[r] = m;
    const int64_t tgt = targets[r];
    if (tgt >= v0 && tgt < v0 + chunk) target_logit[r] = l[tgt - v0];
  }
}

}  // namespace

cudaError_t LaunchRouterTopK(const float* logits, int64_t tokens,
                             int64_t experts, int64_t k, bool renormalize,
                             int32_t* ids, float* weights,
                             cudaStream_t stream) {
  if (tokens == 0) return cudaSuccess;
  if (experts < 1 || experts > kMaxRouterExperts || k < 1 || k > kMaxTopK ||
      k > experts) {
    return cudaErrorInvalidValue;
  }
  const auto blocks =
      static_cast<unsigned int>((tokens + kRouterWarps - 1) / kRouterWarps);
  RouterTopKKernel<<<blocks, kRouterWarps * 32, 0, stream>>>(
      logits, tokens, static_cast<int>(experts), static_cast<int>(k),
      renormalize, ids, weights);
  return cudaGetLastError();
}

cudaError_t LaunchLogSumExpChunk(const float* logits, int64_t rows,
                                 int64_t chunk, int64_t v0,
                                 const int32_t* targets, float* run_max,
                                 double* run_sum, double* target_logit,
                                 cudaStream_t stream) {
  if (rows == 0 || chunk == 0) return cudaSuccess;
  LogSumExpChunkKernel<<<static_cast<unsigned int>(rows), kRowThreads, 0,
                         stream>>>(logits, chunk, v0, targets, run_max, run_sum,
                                   target_logit);
  return cudaGetLastError();
}

}  // namespace care::compute::cuda
