// Useful floating-point operations of a conversion's stages (2 per
// multiply-add), from the model config and the token counts in
// care_report.json. Counts what a dense implementation must compute:
// every projection on every token (for MoE layers: the router and the k
// routed experts), causal attention (QKᵀ and PV over the T(T+1)/2 visible
// pairs) and the lm_head on the scored tokens only.
#ifndef CARE_BENCH_SCALE_FLOP_MODEL_H_
#define CARE_BENCH_SCALE_FLOP_MODEL_H_

#include <cstdint>

#include "care/io/model_config.h"

namespace care::bench {

// One forward of `windows` windows of `seq_len` input tokens through all
// layers, plus the head on `scored` tokens.
double ForwardFlops(const ModelConfig& c, int64_t windows, int64_t seq_len,
                    int64_t scored);

// The layers' share only (no head), per token, for a window of seq_len.
double LayerFlopsPerToken(const ModelConfig& c, int64_t seq_len);

// lm_head per scored token.
double HeadFlopsPerToken(const ModelConfig& c);

}  // namespace care::bench

#endif  // CARE_BENCH_SCALE_FLOP_MODEL_H_
