// Host-side launchers of the CUDA backend's kernels (*.cu). Raw device
// pointers, row-major fp32 activations; every launcher enqueues on `stream`
// and returns the launch's cudaError_t (cudaGetLastError), which the backend
// turns into a status naming the op, the shapes and the device. Shapes are
// validated by the caller (cuda_backend.cc), not here.
#ifndef CARE_COMPUTE_CUDA_KERNELS_H_
#define CARE_COMPUTE_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace care::compute::cuda {

// Stored as raw 16-bit patterns so this header needs no cuda_bf16.h.
using Bf16Bits = uint16_t;

// y[r, g*width + i] = x[r, g*width + i] * rsqrt(mean_g(x²) + eps) * w[i]
// for each row r and group g of `width` columns (width = cols for a plain
// RMSNorm); sum of squares in double like the CPU kernel. y may alias x.
cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y,
                          int64_t rows, int64_t cols, int64_t width, double eps,
                          cudaStream_t stream);

// HF rotate_half RoPE in place on x [rows, heads * head_dim]: row t uses
// position t mod seq_len; cos/sin are [seq_len, rotary_dim / 2] (already
// scaled by the attention factor); columns rotary_dim..head_dim-1 of each
// head pass through.
cudaError_t LaunchRope(const float* cos, const float* sin, int64_t seq_len,
                       int64_t rotary_dim, int64_t head_dim, float* x,
                       int64_t rows, int64_t cols, cudaStream_t stream);

// gate[i] = silu(gate[i]) * up[i], n elements.
cudaError_t LaunchSiluMul(float* gate, const float* up, int64_t n,
                          cudaStream_t stream);
// y[i] += x[i], n elements.
cudaError_t LaunchAdd(const float* x, float* y, int64_t n, cudaStream_t stream);
// y[r, c] += b[c] for y [rows, cols].
cudaError_t LaunchAddRow(const float* b, float* y, int64_t rows, int64_t cols,
                         cudaStream_t stream);
// y[i] *= s, n elements.
cudaError_t LaunchScale(float* y, float s, int64_t n, cudaStream_t stream);

// Round-to-nearest-even fp32 -> bf16 and the exact widening back.
cudaError_t LaunchF32ToBf16(const float* x, Bf16Bits* y, int64_t n,
                            cudaStream_t stream);
cudaError_t LaunchBf16ToF32(const Bf16Bits* x, float* y, int64_t n,
                            cudaStream_t stream);

// Causal grouped-query attention, flash style (online softmax over key tiles
// in fp32, no [T, T] score matrix). q: [windows * seq_len, heads *
// head_dim]; k: [windows * seq_len, kv_heads * head_dim]; v: [.., kv_heads *
// v_head_dim]; out: [.., heads * v_head_dim]; query head h reads kv head
// h / (heads / kv_heads); scores are q·k · scale. head_dim and v_head_dim
// <= kMaxAttentionHeadDim.
inline constexpr int64_t kMaxAttentionHeadDim = 256;
cudaError_t LaunchCausalAttention(const float* q, const float* k,
                                  const float* v, float* out, int64_t windows,
                                  int64_t seq_len, int64_t heads,
                                  int64_t kv_heads, int64_t head_dim,
                                  int64_t v_head_dim, float scale,
                                  cudaStream_t stream);

// Router: logits [tokens, experts] -> softmax (double) -> top k (higher
// probability first, the lower expert index on ties) -> ids [tokens, k]
// and weights [tokens, k], renormalized to sum 1 when `renormalize`.
// experts <= kMaxRouterExperts.
inline constexpr int64_t kMaxRouterExperts = 1024;
cudaError_t LaunchRouterTopK(const float* logits, int64_t tokens,
                             int64_t experts, int64_t k, bool renormalize,
                             int32_t* ids, float* weights, cudaStream_t stream);

// out[i, :] = x[ids[i], :] for i < n; x [*, cols], out [n, cols].
cudaError_t LaunchGatherRows(const float* x, const int64_t* ids, int64_t n,
                             int64_t cols, float* out, cudaStream_t stream);
// out[ids[i], :] (+)= weights[i] * y[i, :] (weights may be null = 1). The
// ids of one launch must be distinct (checked by the backend), so each
// output row is written by one block and the result is deterministic.
cudaError_t LaunchScatterRows(const float* y, const int64_t* ids,
                              const float* weights, int64_t n, int64_t cols,
                              float* out, bool accumulate, cudaStream_t stream);
// y[t, :] = Σ_{j<k} x[t*k + j, :], summed in order j = 0, 1, ...
cudaError_t LaunchSumRowGroups(const float* x, int64_t groups, int64_t k,
                               int64_t cols, float* y, cudaStream_t stream);

// One vocabulary chunk of a running log-sum-exp: logits [rows, chunk] hold
// vocabulary entries [v0, v0 + chunk). Per row r: run_max[r] / run_sum[r]
// (sum of exp(logit - run_max), double) are updated, and target_logit[r] is
// set when targets[r] falls in the chunk (targets < 0 are ignored).
cudaError_t LaunchLogSumExpChunk(const float* logits, int64_t rows,
                                 int64_t chunk, int64_t v0,
                                 const int32_t* targets, float* run_max,
                                 double* run_sum, double* target_logit,
                                 cudaStream_t stream);

// sum[i] += block[i] for the lower triangle (column-major, i >= j) of a
// [dim, dim] fp32 SYRK block into the fp64 accumulator.
cudaError_t LaunchAccumulateLower(const float* block, int64_t dim, double* sum,
                                  cudaStream_t stream);
// abs_sum[c] += Σ_r |x[r, c]| (double) for x [rows, cols].
cudaError_t LaunchAbsColumnSums(const float* x, int64_t rows, int64_t cols,
                                double* abs_sum, cudaStream_t stream);
// *count += number of NaN/inf among x[0..n).
cudaError_t LaunchCountNonFinite(const float* x, int64_t n,
                                 unsigned long long* count,
                                 cudaStream_t stream);
// x[i] = value, n floats (e.g. -inf for a running max).
cudaError_t LaunchFill(float* x, float value, int64_t n, cudaStream_t stream);

// ---- training ops (train_elementwise.cu, attention_backward.cu)

// RoPE in place on x [rows, heads * head_dim] like LaunchRope, on pairs
// (2i, 2i+1) when `interleaved` (else (i, i + rotary_dim/2)), by −θ when
// `inverse`.
cudaError_t LaunchRotary(const float* cos, const float* sin, int64_t seq_len,
                         int64_t rotary_dim, int64_t head_dim, bool interleaved,
                         bool inverse, float* x, int64_t rows, int64_t cols,
                         cudaStream_t stream);
// y[i] = alpha * x[i] + beta * y[i] (y not read when beta == 0), n elements.
cudaError_t LaunchAxpby(float alpha, const float* x, float beta, float* y,
                        int64_t n, cudaStream_t stream);
// Partial sums of (a[i] - b[i])² in double, one per block of a fixed grid
// of kSquaredDistanceBlocks blocks (partials[kSquaredDistanceBlocks]), then
// one block adding them in order into *out: deterministic.
inline constexpr int kSquaredDistanceBlocks = 256;
cudaError_t LaunchSquaredDistance(const float* a, const float* b, int64_t n,
                                  double* partials, double* out,
                                  cudaStream_t stream);
// For every row r < rows, j < width and group g < groups (in order):
// dst[r*dst_cols + dst_col0 + g*dst_stride + j] +=
//   src[r*src_cols + src_col0 + g*src_stride + j].
cudaError_t LaunchAddColumns(const float* src, int64_t src_cols,
                             int64_t src_col0, int64_t src_stride, float* dst,
                             int64_t dst_cols, int64_t dst_col0,
                             int64_t dst_stride, int64_t rows, int64_t groups,
                             int64_t width, cudaStream_t stream);
// Adam on n elements (backend.h AdamStep), fp32.
cudaError_t LaunchAdam(const float* grad, float* param, float* m1, float* m2,
                       int64_t n, float lr, float beta1, float beta2,
                       float one_minus_beta1, float one_minus_beta2,
                       float correction1, float correction2, float eps,
                       float grad_scale, cudaStream_t stream);
// The backward of LaunchCausalAttention (same layouts and limits): dq, dk,
// dv from q, k, v, out and d_out. row_stats [2, windows*seq_len*heads] is
// scratch (log-sum-exp and D_i = d_out·out per row and head). Two kernels,
// one warp per (query row, head) then per (key row, kv head); no atomics.
cudaError_t LaunchCausalAttentionBackward(
    const float* q, const float* k, const float* v, const float* out,
    const float* d_out, float* dq, float* dk, float* dv, float* row_stats,
    int64_t windows, int64_t seq_len, int64_t heads, int64_t kv_heads,
    int64_t head_dim, int64_t v_head_dim, float scale, cudaStream_t stream);

}  // namespace care::compute::cuda

#endif  // CARE_COMPUTE_CUDA_KERNELS_H_
