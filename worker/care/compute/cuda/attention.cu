// Causal GQA attention, flash style: a block owns kQTile query rows of one
// (window, head) and walks the key tiles up to its last row, keeping per row
// a running max m, running sum l and the unnormalized output in registers
// (online softmax, fp32), so no [T, T] score matrix exists and T = 4096 needs
// only the block's shared tiles. SIMT fp32 (no tensor cores): exact enough
// to compare with the CPU kernel at ~1e-5, but slower than a tensor-core
// kernel (docs/gpu.md, "what is not done").
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

// 4 warps x 8 rows: each key/value tile read from memory serves 32 query
// rows, and each k element loaded by a lane serves 8 rows (128 registers,
// no spills on sm_90).
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 8;
constexpr int kQTile = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kKTile = 32;                     // keys per tile = warp width
constexpr int kMaxDimsPerLane = kMaxAttentionHeadDim / 32;

// Shared memory: q [kQTile, dh] (pre-scaled), k [kKTile, dh + 1] (padded so
// lane j reading key j's column d hits distinct banks), v [kKTile, dv].
size_t SharedBytes(int64_t dh, int64_t dv) {
  return sizeof(float) * (kQTile * dh + kKTile * (dh + 1) + kKTile * dv);
}

__global__ void __launch_bounds__(kWarps * 32)
    FlashAttentionKernel(const float* __restrict__ q,
                         const float* __restrict__ k,
                         const float* __restrict__ v, float* __restrict__ out,
                         int64_t seq_len, int64_t heads, int64_t kv_heads,
                         int64_t dh, int64_t dv, float scale) {
  extern __shared__ float smem[];
  float* qs = smem;                    // [kQTile, dh]
  float* ks = qs + kQTile * dh;        // [kKTile, dh + 1]
  float* vs = ks + kKTile * (dh + 1);  // [kKTile, dv]

  // Longest blocks (last query tiles) first.
  const int64_t q_tiles = (seq_len + kQTile - 1) / kQTile;
  const int64_t q0 = (q_tiles - 1 - blockIdx.x) * kQTile;
  const int64_t h = blockIdx.y, w = blockIdx.z;
  const int64_t kv_h = h / (heads / kv_heads);
  const int64_t q_stride = heads * dh, k_stride = kv_heads * dh;
  const int64_t v_stride = kv_heads * dv, o_stride = heads * dv;
  const float* qb = q + (w * seq_len) * q_stride + h * dh;
  const float* kb = k + (w * seq_len) * k_stride + kv_h * dh;
  const float* vb = v + (w * seq_len) * v_stride + kv_h * dv;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  for (int64_t i = tid; i < kQTile * dh; i += blockDim.x) {
    const int64_t r = i / dh, d = i % dh;
    qs[i] = q0 + r < seq_len ? qb[(q0 + r) * q_stride + d] * scale : 0.0f;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp];
  float acc[kRowsPerWarp][kMaxDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) acc[r][i] = 0.0f;
  }
  const int64_t row0 = q0 + warp * kRowsPerWarp;  // this warp's first row
  const int64_t last_key =
      q0 + kQTile < seq_len ? q0 + kQTile : seq_len;  // exclusive
  for (int64_t k0 = 0; k0 < last_key; k0 += kKTile) {
    __syncthreads();  // previous tile fully consumed (and qs written)
    for (int64_t i = tid; i < kKTile * dh; i += blockDim.x) {
      const int64_t j = i / dh, d = i % dh;
      ks[j * (dh + 1) + d] =
          k0 + j < seq_len ? kb[(k0 + j) * k_stride + d] : 0.0f;
    }
    for (int64_t i = tid; i < kKTile * dv; i += blockDim.x) {
      const int64_t j = i / dv, d = i % dv;
      vs[j * dv + d] = k0 + j < seq_len ? vb[(k0 + j) * v_stride + d] : 0.0f;
    }
    __syncthreads();
    // Lane j scores key k0 + j against the warp's rows.
    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.0f;
    const float* kj = ks + lane * (dh + 1);
    const float* qw = qs + (warp * kRowsPerWarp) * dh;
    for (int64_t d = 0; d < dh; ++d) {
      const float kv = kj[d];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) s[r] += qw[r * dh + d] * kv;
    }
    const int64_t key = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      // Causal mask; key 0 is visible to every row, so m is finite after
      // the first tile and exp never sees (-inf) - (-inf).
      if (key > row0 + r) s[r] = -INFINITY;
      float tile_max = s[r];
      for (int off = 16; off > 0; off >>= 1) {
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
      }
      const float m_new = fmaxf(m[r], tile_max);
      const float p = expf(s[r] - m_new);
      const float corr = expf(m[r] - m_new);
      float p_sum = p;
      for (int off = 16; off > 0; off >>= 1) {
        p_sum += __shfl_xor_sync(0xffffffffu, p_sum, off);
      }
      l[r] = l[r] * corr + p_sum;
      m[r] = m_new;
#pragma unroll
      for (int i = 0; i < kMaxDimsPerLane; ++i) acc[r][i] *= corr;
      for (int j = 0; j < kKTile; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        const float* vj = vs + j * dv;
#pragma unroll
        for (int i = 0; i < kMaxDimsPerLane; ++i) {
          const int64_t d = lane + 32 * i;
          if (d < dv) acc[r][i] += pj * vj[d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = row0 + r;
    if (row >= seq_len) continue;
    float* o = out + (w * seq_len + row) * o_stride + h * dv;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      const int64_t d = lane + 32 * i;
      if (d < dv) o[d] = acc[r][i] * inv;
    }
  }
}

}  // namespace

cudaError_t LaunchCausalAttention(const float* q, const float* k,
                                  const float* v, float* out, int64_t windows,
                                  int64_t seq_len, int64_t heads,
                                  int64_t kv_heads, int64_t head_dim,
                                  int64_t v_head_dim, float scale,
                                  cudaStream_t stream) {
  if (windows == 0 || seq_len == 0 || heads == 0) return cudaSuccess;
  if (head_dim <= 0 || head_dim > kMaxAttentionHeadDim || v_head_dim <= 0 ||
      v_head_dim > kMaxAttentionHeadDim || kv_heads <= 0 ||
      heads % kv_heads != 0 || heads > 65535 || windows > 65535) {
    return cudaErrorInvalidValue;
  }
  const size_t smem = SharedBytes(head_dim, v_head_dim);
  // Above 48 KiB (head_dim > 128) the kernel must opt in.
  cudaError_t err = cudaFuncSetAttribute(
      FlashAttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned int>((seq_len + kQTile - 1) / kQTile),
                  static_cast<unsigned int>(heads),
                  static_cast<unsigned int>(windows));
  FlashAttentionKernel<<<grid, kWarps * 32, smem, stream>>>(
      q, k, v, out, seq_len, heads, kv_heads, head_dim, v_head_dim, scale);
  return cudaGetLastError();
}

}  // namespace care::compute::cuda
