#include "care/engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/registry.h"
#include "care/engine/kv_projector.h"

namespace care::engine {

absl::StatusOr<EvalWindows> MakeEvalWindows(const std::vector<int32_t>& stream,
                                            const WindowOptions& o) {
  const int64_t T = o.seq_len;
  if (T < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len ", T, " must be >= 2"));
  }
  const int64_t n = static_cast<int64_t>(stream.size());
  if (o.start < 0 || o.start > n || o.max_windows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window start ", o.start, " must be in [0, ", n,
                     "] and max_windows ", o.max_windows, " >= 0"));
  }
  // Stream tokens consumed per window: T (P1) or T-1 (P2, BOS is added).
  const int64_t stride = o.bos.has_value() ? T - 1 : T;
  int64_t windows = (n - o.start) / stride;
  if (o.max_windows > 0) windows = std::min(windows, o.max_windows);
  if (windows < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the token stream has ", n - o.start, " tokens from position ", o.start,
        ", fewer than one window of ", stride));
  }
  EvalWindows out;
  out.inputs.num_windows = windows;
  out.inputs.seq_len = T - 1;
  out.inputs.ids.reserve(windows * (T - 1));
  out.targets.reserve(windows * (T - 1));
  for (int64_t w = 0; w < windows; ++w) {
    const int32_t* c = stream.data() + o.start + w * stride;
    if (o.bos.has_value()) {
      out.inputs.ids.push_back(*o.bos);  // [BOS] + c[0..T-3]
      out.inputs.ids.insert(out.inputs.ids.end(), c, c + T - 2);
      out.targets.insert(out.targets.end(), c, c + T - 1);  // c[0..T-2]
    } else {
      out.inputs.ids.insert(out.inputs.ids.end(), c, c + T - 1);  // 0..T-2
      out.targets.insert(out.targets.end(), c + 1, c + T);        // 1..T-1
    }
  }
  return out;
}

absl::StatusOr<PerplexityResult> EvaluatePerplexity(
    const ModelConfig& config, const TensorSource& weights,
    const EvalWindows& windows, const EngineOptions& options,
    const LayerHooks& hooks, int64_t windows_per_pass) {
  const int64_t total = windows.inputs.num_windows;
  const int64_t L = windows.inputs.seq_len;
  const int64_t per_pass = windows_per_pass > 0 ? windows_per_pass : total;
  NllSum nll;
  for (int64_t w0 = 0; w0 < total; w0 += per_pass) {
    const int64_t nw = std::min(per_pass, total - w0);
    TokenWindows part;
    part.num_windows = nw;
    part.seq_len = L;
    part.ids.assign(windows.inputs.ids.begin() + w0 * L,
                    windows.inputs.ids.begin() + (w0 + nw) * L);
    const std::vector<int32_t> targets(windows.targets.begin() + w0 * L,
                                       windows.targets.begin() + (w0 + nw) * L);
    CARE_ASSIGN_OR_RETURN(
        auto fwd,
        LayerwiseForward::Create(config, weights, std::move(part), options));
    CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers(), hooks));
    CARE_ASSIGN_OR_RETURN(NllSum part_nll, fwd->ScoreTargets(targets));
    nll.Add(part_nll);
  }
  return PerplexityResult{.windows = total,
                          .predictions = nll.count,
                          .mean_nll = nll.mean(),
                          .ppl = nll.ppl()};
}

absl::StatusOr<PerplexityPair> EvaluatePerplexityPair(
    const ModelConfig& config, const TensorSource& weights,
    const EvalWindows& windows, const EngineOptions& options,
    const std::function<absl::StatusOr<std::unique_ptr<KvProjector>>(int64_t)>&
        second_projector,
    const LayerHooks& hooks, int64_t max_hidden_bytes) {
  const int64_t total = windows.inputs.num_windows;
  const int64_t T = windows.inputs.seq_len;
  const int64_t window_bytes = 2 * T * config.hidden_size * 4;  // both copies
  int64_t per_pass = total;
  if (total > 1 && total * window_bytes > max_hidden_bytes) {
    per_pass =
        std::max<int64_t>(max_hidden_bytes / window_bytes, (total + 1) / 2);
  }
  // Twice the rows per vocabulary chunk's logits block: the same chunks of
  // lm_head as a single model's pass, so its scoring sums in the same order.
  compute::Backend* backend = options.backend;
  if (backend == nullptr) {
    CARE_ASSIGN_OR_RETURN(backend, compute::SharedBackend(options.device));
  }
  EngineOptions pair_options = options;
  pair_options.logits_block_elements =
      2 * (options.logits_block_elements > 0
               ? options.logits_block_elements
               : DefaultLogitsBlockElements(*backend));
  LayerHooks pair_hooks;
  pair_hooks.on_layer_output = hooks.on_layer_output;
  NllSum first, second;
  for (int64_t w0 = 0; w0 < total; w0 += per_pass) {
    const int64_t nw = std::min(per_pass, total - w0);
    const auto ids = windows.inputs.ids.begin() + w0 * T;
    const auto targets = windows.targets.begin() + w0 * T;
    TokenWindows both;  // the windows, then the same windows again
    both.num_windows = 2 * nw;
    both.seq_len = T;
    both.ids.assign(ids, ids + nw * T);
    both.ids.insert(both.ids.end(), ids, ids + nw * T);
    std::vector<int32_t> both_targets(targets, targets + nw * T);
    both_targets.insert(both_targets.end(), targets, targets + nw * T);
    CARE_ASSIGN_OR_RETURN(
        auto fwd, LayerwiseForward::Create(config, weights, std::move(both),
                                           pair_options));
    pair_hooks.make_kv_projector =
        [&](int64_t l) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
      CARE_ASSIGN_OR_RETURN(
          std::unique_ptr<KvProjector> own,
          LoadKvProjector(config, weights, l, fwd->backend()));
      CARE_ASSIGN_OR_RETURN(std::unique_ptr<KvProjector> other,
                            second_projector(l));
      if (other == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "EvaluatePerplexityPair: no second K/V projector for layer ", l));
      }
      return std::make_unique<SplitKvProjector>(std::move(own),
                                                std::move(other), nw * T);
    };
    CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers(), pair_hooks));
    CARE_ASSIGN_OR_RETURN(std::vector<double> nll,
                          fwd->ScoreTargetsEach(both_targets));
    for (int64_t i = 0; i < 2 * nw * T; ++i) {
      if (both_targets[i] < 0) continue;
      NllSum& sum = i < nw * T ? first : second;
      sum.sum += nll[i];
      ++sum.count;
    }
  }
  auto result = [&](const NllSum& nll) {
    return PerplexityResult{.windows = total,
                            .predictions = nll.count,
                            .mean_nll = nll.mean(),
                            .ppl = nll.ppl()};
  };
  return PerplexityPair{result(first), result(second)};
}

}  // namespace care::engine
