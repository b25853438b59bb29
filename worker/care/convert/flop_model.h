// Useful floating-point operations of a conversion's stages (2 per
// multiply-add), from the model config and token counts. Counts what a dense
// implementation must compute: every projection on every token (for MoE
// layers: the router and the k routed experts, plus DeepSeek's shared
// experts; deepseek_v3's latent projections), causal attention (QKᵀ and PV
// over the T(T+1)/2 visible pairs) and the lm_head on the scored tokens
// only. The pipeline divides these by measured wall time for its achieved
// GFLOP/s (report "flops", worker metric care_worker_achieved_gflops);
// bench/scale/scale_bench does the same from a finished report.
#ifndef CARE_CONVERT_FLOP_MODEL_H_
#define CARE_CONVERT_FLOP_MODEL_H_

#include <cstdint>

#include "care/io/model_config.h"

namespace care::convert {

// Layer `layer` per token, for a window of seq_len.
double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len, int64_t layer);

// All layers (no head) per token, for a window of seq_len.
double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len);

// lm_head per scored token.
double HeadFlopsPerToken(const ModelConfig& c);

// One forward of `windows` windows of `seq_len` input tokens through all
// layers, plus the head on `scored` tokens.
double ForwardFlops(const ModelConfig& c, int64_t windows, int64_t seq_len,
                    int64_t scored);

// The GEMM part of fitting one layer (decompose_model.cc): the calibration
// covariance Σxᵀx over `calib_tokens` rows (symmetric, lower half), the
// Grams WᵀCW for K and V, and the held-out Grams (X·W)ᵀ(X·W) over
// `heldout_tokens` rows. The whitening and SVD solvers are not counted:
// they are a small, shape-only share (docs/scale.md) and have no agreed
// operation count.
double FitFlopsPerLayer(const ModelConfig& c, int64_t calib_tokens,
                        int64_t heldout_tokens);

}  // namespace care::convert

#endif  // CARE_CONVERT_FLOP_MODEL_H_
