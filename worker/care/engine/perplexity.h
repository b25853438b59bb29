// Perplexity over a token stream (method.md §6): non-overlapping windows of
// T tokens, every position but the first scored, ppl = exp(mean NLL).
//
//   P1 (plain): window w = ids[start + w*T, start + (w+1)*T); the model reads
//     positions 0..T-2 and is scored on the targets at 1..T-1 (T-1 each).
//   P2 (BOS-prefixed): chunk c = ids[start + w*(T-1), start + (w+1)*(T-1));
//     the model reads [BOS] + c[0..T-3] and is scored on c[0..T-2] (T-1
//     each; the first prediction comes from BOS alone).
// Both forms feed T-1 tokens per window; the fixtures' SOURCE.md files
// publish reference numbers for both.
#ifndef CARE_ENGINE_PERPLEXITY_H_
#define CARE_ENGINE_PERPLEXITY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "care/engine/engine.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct WindowOptions {
  int64_t seq_len = 0;      // T >= 2
  int64_t max_windows = 0;  // 0: every full window of the stream
  int64_t start = 0;        // first stream position used
  std::optional<int32_t> bos = std::nullopt;  // set: P2 form with this BOS id
};

// Inputs (T-1 tokens per window) and their targets, one per input token.
struct EvalWindows {
  TokenWindows inputs;
  std::vector<int32_t> targets;  // [inputs.tokens()]
};

// Cuts the stream; InvalidArgument when T < 2 or no full window fits.
absl::StatusOr<EvalWindows> MakeEvalWindows(const std::vector<int32_t>& stream,
                                            const WindowOptions& options);

struct PerplexityResult {
  int64_t windows = 0;
  int64_t predictions = 0;
  double mean_nll = 0.0;
  double ppl = 0.0;
};

// Runs the model over `windows` layer by layer and scores every target.
// windows_per_pass > 0 splits the windows into passes of that many (each
// pass reloads every layer; bounds the hidden-state memory); 0 = one pass.
// `hooks` are passed to every layer of every pass.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(
    const ModelConfig& config, const TensorSource& weights,
    const EvalWindows& windows, const EngineOptions& options = {},
    const LayerHooks& hooks = {}, int64_t windows_per_pass = 0);

// The perplexity of two models that differ only in their K/V projections
// (an original and its converted form) in one pass: each pass runs its
// windows twice, side by side, the first copy through the checkpoint's own
// K/V projection and the second through second_projector(l); every other
// weight (the layers' projections and the vocabulary head) is loaded and
// converted once for both, and their GEMMs have twice the rows. Equal to two
// EvaluatePerplexity calls (the second with make_kv_projector =
// second_projector) up to float rounding. hooks.on_layer_output is called
// once per layer and pass (with both copies' hidden states); the other hooks
// are not used. Memory: twice one pass's hidden states, so the windows are
// split into passes that keep those under max_hidden_bytes (or into two
// passes, no more memory than the single model's one).
struct PerplexityPair {
  PerplexityResult first, second;
};
absl::StatusOr<PerplexityPair> EvaluatePerplexityPair(
    const ModelConfig& config, const TensorSource& weights,
    const EvalWindows& windows, const EngineOptions& options,
    const std::function<absl::StatusOr<std::unique_ptr<KvProjector>>(int64_t)>&
        second_projector,
    const LayerHooks& hooks = {}, int64_t max_hidden_bytes = int64_t{1} << 30);

}  // namespace care::engine

#endif  // CARE_ENGINE_PERPLEXITY_H_
