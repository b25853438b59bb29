// Scores many token sequences of different lengths through the layer-by-layer
// engine: sequences are sorted by length and packed into passes of equal-
// length windows (padded at the end, which causal attention never lets an
// earlier position see), at most `tokens_per_pass` tokens per pass. Each
// sequence gets the sum of its scored targets' NLLs.
#ifndef CARE_EVAL_SEQUENCES_H_
#define CARE_EVAL_SEQUENCES_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "care/engine/engine.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::eval {

struct Sequence {
  std::vector<int32_t> inputs;   // [n] model inputs
  std::vector<int32_t> targets;  // [n] next-token targets, -1 = not scored
};

struct SequenceOptions {
  engine::EngineOptions engine;
  // Passes to the engine's hooks: a converted model's K/V projectors, and
  // progress / cancellation at layer boundaries.
  engine::LayerHooks hooks;
  // Upper bound on padded tokens per pass (a pass holds at least one
  // sequence); each pass reads every layer's weights once.
  int64_t tokens_per_pass = 16384;
  // Called after each pass with (sequences done, total).
  std::function<absl::Status(int64_t, int64_t)> on_pass;
};

// One NllSum (natural log, double) per sequence, in input order.
absl::StatusOr<std::vector<engine::NllSum>> ScoreSequences(
    const ModelConfig& config, const TensorSource& weights,
    const std::vector<Sequence>& sequences, const SequenceOptions& options);

}  // namespace care::eval

#endif  // CARE_EVAL_SEQUENCES_H_
