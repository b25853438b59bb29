#include "care/eval/sequences.h"

#include <algorithm>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::eval {

absl::StatusOr<std::vector<engine::NllSum>> ScoreSequences(
    const ModelConfig& config, const TensorSource& weights,
    const std::vector<Sequence>& sequences, const SequenceOptions& options) {
  const int64_t n = static_cast<int64_t>(sequences.size());
  for (int64_t i = 0; i < n; ++i) {
    const Sequence& s = sequences[i];
    if (s.inputs.empty() || s.inputs.size() != s.targets.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", i, " has ", s.inputs.size(), " inputs and ",
          s.targets.size(), " targets (need the same, at least 1)"));
    }
  }
  // Longest first, so each pass's padding is set by its first sequence.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return sequences[a].inputs.size() > sequences[b].inputs.size();
  });
  std::vector<engine::NllSum> out(n);
  const int64_t budget = std::max<int64_t>(options.tokens_per_pass, 1);
  int64_t done = 0;
  for (int64_t p = 0; p < n;) {
    const int64_t len = sequences[order[p]].inputs.size();
    const int64_t count = std::min(n - p, std::max<int64_t>(1, budget / len));
    engine::TokenWindows windows;
    windows.num_windows = count;
    windows.seq_len = len;
    windows.ids.assign(count * len, 0);  // padding id 0, never scored
    std::vector<int32_t> targets(count * len, -1);
    for (int64_t w = 0; w < count; ++w) {
      const Sequence& s = sequences[order[p + w]];
      std::copy(s.inputs.begin(), s.inputs.end(),
                windows.ids.begin() + w * len);
      std::copy(s.targets.begin(), s.targets.end(), targets.begin() + w * len);
    }
    CARE_ASSIGN_OR_RETURN(
        auto fwd, engine::LayerwiseForward::Create(
                      config, weights, std::move(windows), options.engine));
    CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers(), options.hooks));
    CARE_ASSIGN_OR_RETURN(std::vector<double> nll,
                          fwd->ScoreTargetsEach(targets));
    for (int64_t w = 0; w < count; ++w) {
      engine::NllSum& sum = out[order[p + w]];
      for (int64_t t = w * len; t < (w + 1) * len; ++t) {
        if (targets[t] < 0) continue;
        sum.sum += nll[t];
        ++sum.count;
      }
    }
    p += count;
    done += count;
    if (options.on_pass) CARE_RETURN_IF_ERROR(options.on_pass(done, n));
  }
  return out;
}

}  // namespace care::eval
