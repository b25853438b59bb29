// The healing schedule (heal_layer.h "HealLayer"), owned here once and run
// by both loops: HealLayer (Eigen, the float/double reference) and
// HealLayerOnBackend (heal_backend.h, what the stage runs). A loop supplies
// the math (an Adam step on a mini-batch, the held-out error, keeping the
// current parameters); this file decides which windows, which step sizes,
// when to evaluate, what to keep and when to stop.
#ifndef CARE_CONVERT_MLA_EXPORT_HEAL_SCHEDULE_H_
#define CARE_CONVERT_MLA_EXPORT_HEAL_SCHEDULE_H_

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "care/convert/mla_export/heal_layer.h"

namespace care::convert::mla {

// Adam's constants of healing (both loops).
inline constexpr double kHealBeta1 = 0.9;
inline constexpr double kHealBeta2 = 0.999;
inline constexpr double kHealEps = 1e-12;

inline constexpr int kHealBlocks = HealParams<float>::kBlocks;

// One step as the schedule hands it to a loop.
struct HealStep {
  int64_t step = 0;                   // 1-based
  absl::Span<const int64_t> windows;  // training windows of the mini-batch
  // Per-block Adam step: the block's starting-RMS step, cosine-decayed.
  std::array<double, kHealBlocks> lr{};
  double correction1 = 1, correction2 = 1;  // Adam's 1 − β^step
  // Non-null on step 1 only: the loop stores Σ‖ŷ − y‖²/Σ‖y‖² on the batch
  // before the update (HealResult::train_before).
  double* train_before = nullptr;
};

// What a loop provides: the math on its own memory.
struct HealLoop {
  // One Adam step of the current parameters on step.windows, with the
  // gradient of the batch's relative loss (Σ‖ŷ − y‖² / Σ‖y‖²).
  std::function<absl::Status(const HealStep& step)> step;
  // Σ‖ŷ − y‖² / Σ‖y‖² of the current parameters on the held-out windows.
  std::function<absl::StatusOr<double>()> heldout;
  // The current parameters are the best so far: keep a copy.
  std::function<absl::Status()> keep;
};

// The checks (and messages) of both loops: the shapes, whole windows of
// training and held-out tokens, and the options' ranges.
template <typename S>
absl::Status CheckHealRun(const HealAttention<S>& a, const HealParams<S>& p,
                          int64_t train_rows, int64_t heldout_rows,
                          const HealOptions& options);

// Windows per held-out evaluation chunk (bounds the evaluation's memory).
inline int64_t HealEvalChunk(const HealOptions& options) {
  return std::max<int64_t>(options.batch_windows, 16);
}

// Runs the schedule from the parameters `start` (their block RMS set the
// per-block steps, read before the first step): held-out error before, then
// Adam steps on mini-batches of windows shuffled by std::mt19937_64(seed)
// (reshuffled at each epoch), the held-out error every eval_every steps and at
// the last, keep() on every improvement (and once on the start), stop after
// `patience` evaluations without one; options.on_step after every step. The
// loop's kept parameters are the result's; the caller restores them.
template <typename S>
absl::StatusOr<HealResult> RunHealSchedule(const HealParams<S>& start,
                                           int64_t train_windows,
                                           const HealOptions& options,
                                           const HealLoop& loop);

// Copies the windows `windows` (of t_len rows each) of src into the
// consecutive windows of dst.
template <typename S>
void GatherWindows(const Eigen::Ref<const HealMatrix<S>>& src,
                   absl::Span<const int64_t> windows, int64_t t_len,
                   HealMatrix<S>& dst) {
  for (size_t i = 0; i < windows.size(); ++i) {
    dst.middleRows(static_cast<int64_t>(i) * t_len, t_len) =
        src.middleRows(windows[i] * t_len, t_len);
  }
}

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_HEAL_SCHEDULE_H_
