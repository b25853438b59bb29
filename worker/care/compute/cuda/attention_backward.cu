// The backward of the causal GQA attention (backend.h
// CausalAttentionBackward): straightforward fp32 kernels, numerics first.
// A warp owns one row and its lanes own the head dimensions (d = lane +
// 32·t), so every dot product is a lane-local partial plus a butterfly
// reduction and every gradient row is accumulated in registers by the one
// warp that writes it: no atomics, a fixed order, no [T, T] matrix.
//   1. per (query row i, head h): L_i = log Σ_j exp(s_ij) over the visible
//      keys (two passes: max/sum, then) dq_i = Σ_j dS_ij k_j with
//      P_ij = exp(s_ij − L_i), dS_ij = P_ij (dO_i·v_j − D_i)·scale and
//      D_i = dO_i·O_i; L_i and D_i are kept for step 2;
//   2. per (key row j, KV head g): over the group's query heads and the
//      rows i >= j, dv_j = Σ P_ij dO_i and dk_j = Σ dS_ij q_i.
// Cost: O(T²·(d_qk + d_v)) per (window, head), like the forward, with the
// K/V rows read through L1/L2 rather than shared-memory tiles.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

constexpr int kWarps = 4;  // rows per block
constexpr int kDims = kMaxAttentionHeadDim / 32;

__device__ __forceinline__ float WarpSum(float x) {
  for (int off = 16; off > 0; off >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, off);
  }
  return x;
}

// Lane-local partial of a·b over this lane's dims of a [n] row.
__device__ __forceinline__ float LaneDot(const float (&a)[kDims],
                                         const float* b, int64_t n, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int t = 0; t < kDims; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < n) s += a[t] * b[d];
  }
  return s;
}

__device__ __forceinline__ void LoadRow(const float* src, int64_t n, int lane,
                                        float scale, float (&dst)[kDims]) {
#pragma unroll
  for (int t = 0; t < kDims; ++t) {
    const int64_t d = lane + 32 * t;
    dst[t] = d < n ? src[d] * scale : 0.0f;
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    QueryRowsKernel(const float* __restrict__ q, const float* __restrict__ k,
                    const float* __restrict__ v, const float* __restrict__ out,
                    const float* __restrict__ d_out, float* __restrict__ dq,
                    float* __restrict__ lse, float* __restrict__ dsum,
                    int64_t windows, int64_t seq_len, int64_t heads,
                    int64_t kv_heads, int64_t dh, int64_t dv, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t item =
      static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (item >= windows * heads * seq_len) return;  // whole warps exit
  const int64_t i = item % seq_len, h = (item / seq_len) % heads;
  const int64_t w = item / (seq_len * heads);
  const int64_t kv_h = h / (heads / kv_heads);
  const int64_t row = w * seq_len + i;
  const int64_t q_stride = heads * dh, k_stride = kv_heads * dh;
  const int64_t v_stride = kv_heads * dv, o_stride = heads * dv;
  const float* kb = k + w * seq_len * k_stride + kv_h * dh;
  const float* vb = v + w * seq_len * v_stride + kv_h * dv;
  float qr[kDims], gr[kDims], acc[kDims];
  LoadRow(q + row * q_stride + h * dh, dh, lane, scale, qr);  // pre-scaled
  LoadRow(d_out + row * o_stride + h * dv, dv, lane, 1.0f, gr);
  const float d_i =
      WarpSum(LaneDot(gr, out + row * o_stride + h * dv, dv, lane));
  // Pass 1: the log-sum-exp over keys 0..i (online max and sum).
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = 0; j <= i; ++j) {
    const float s = WarpSum(LaneDot(qr, kb + j * k_stride, dh, lane));
    const float m_new = fmaxf(m, s);
    l = l * expf(m - m_new) + expf(s - m_new);
    m = m_new;
  }
  const float lse_i = m + logf(l);
#pragma unroll
  for (int t = 0; t < kDims; ++t) acc[t] = 0.0f;
  // Pass 2: dq_i = Σ_j dS_ij k_j.
  for (int64_t j = 0; j <= i; ++j) {
    const float* kj = kb + j * k_stride;
    const float s = WarpSum(LaneDot(qr, kj, dh, lane));
    const float dp = WarpSum(LaneDot(gr, vb + j * v_stride, dv, lane));
    const float ds = expf(s - lse_i) * (dp - d_i) * scale;
#pragma unroll
    for (int t = 0; t < kDims; ++t) {
      const int64_t d = lane + 32 * t;
      if (d < dh) acc[t] += ds * kj[d];
    }
  }
  float* dqr = dq + row * q_stride + h * dh;
#pragma unroll
  for (int t = 0; t < kDims; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < dh) dqr[d] = acc[t];
  }
  if (lane == 0) {
    lse[row * heads + h] = lse_i;
    dsum[row * heads + h] = d_i;
  }
}

__global__ void __launch_bounds__(kWarps * 32)
    KeyRowsKernel(const float* __restrict__ q, const float* __restrict__ k,
                  const float* __restrict__ v, const float* __restrict__ d_out,
                  const float* __restrict__ lse, const float* __restrict__ dsum,
                  float* __restrict__ dk, float* __restrict__ dvo,
                  int64_t windows, int64_t seq_len, int64_t heads,
                  int64_t kv_heads, int64_t dh, int64_t dv, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t item =
      static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (item >= windows * kv_heads * seq_len) return;
  const int64_t j = item % seq_len, g = (item / seq_len) % kv_heads;
  const int64_t w = item / (seq_len * kv_heads);
  const int64_t group = heads / kv_heads;
  const int64_t key_row = w * seq_len + j;
  const int64_t q_stride = heads * dh, k_stride = kv_heads * dh;
  const int64_t v_stride = kv_heads * dv, o_stride = heads * dv;
  float kr[kDims], vr[kDims], dk_acc[kDims], dv_acc[kDims];
  LoadRow(k + key_row * k_stride + g * dh, dh, lane, scale, kr);  // scaled
  LoadRow(v + key_row * v_stride + g * dv, dv, lane, 1.0f, vr);
#pragma unroll
  for (int t = 0; t < kDims; ++t) dk_acc[t] = dv_acc[t] = 0.0f;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t i = j; i < seq_len; ++i) {
      const int64_t row = w * seq_len + i;
      const float* qi = q + row * q_stride + h * dh;
      const float* gi = d_out + row * o_stride + h * dv;
      const float s = WarpSum(LaneDot(kr, qi, dh, lane));
      const float dp = WarpSum(LaneDot(vr, gi, dv, lane));
      const float p = expf(s - lse[row * heads + h]);
      const float ds = p * (dp - dsum[row * heads + h]) * scale;
#pragma unroll
      for (int t = 0; t < kDims; ++t) {
        const int64_t d = lane + 32 * t;
        if (d < dv) dv_acc[t] += p * gi[d];
        if (d < dh) dk_acc[t] += ds * qi[d];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kDims; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < dh) dk[key_row * k_stride + g * dh + d] = dk_acc[t];
    if (d < dv) dvo[key_row * v_stride + g * dv + d] = dv_acc[t];
  }
}

}  // namespace

cudaError_t LaunchCausalAttentionBackward(
    const float* q, const float* k, const float* v, const float* out,
    const float* d_out, float* dq, float* dk, float* dv, float* row_stats,
    int64_t windows, int64_t seq_len, int64_t heads, int64_t kv_heads,
    int64_t head_dim, int64_t v_head_dim, float scale, cudaStream_t stream) {
  if (windows == 0 || seq_len == 0 || heads == 0) return cudaSuccess;
  if (head_dim <= 0 || head_dim > kMaxAttentionHeadDim || v_head_dim <= 0 ||
      v_head_dim > kMaxAttentionHeadDim || kv_heads <= 0 ||
      heads % kv_heads != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t n = windows * seq_len;
  float* lse = row_stats;
  float* dsum = row_stats + n * heads;
  const int64_t q_items = n * heads, k_items = n * kv_heads;
  QueryRowsKernel<<<static_cast<unsigned int>((q_items + kWarps - 1) / kWarps),
                    kWarps * 32, 0, stream>>>(
      q, k, v, out, d_out, dq, lse, dsum, windows, seq_len, heads, kv_heads,
      head_dim, v_head_dim, scale);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  KeyRowsKernel<<<static_cast<unsigned int>((k_items + kWarps - 1) / kWarps),
                  kWarps * 32, 0, stream>>>(q, k, v, d_out, lse, dsum, dk, dv,
                                            windows, seq_len, heads, kv_heads,
                                            head_dim, v_head_dim, scale);
  return cudaGetLastError();
}

}  // namespace care::compute::cuda
