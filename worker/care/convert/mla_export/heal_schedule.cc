#include "care/convert/mla_export/heal_schedule.h"

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::convert::mla {
namespace {

constexpr double kPi = 3.14159265358979323846;

}  // namespace

template <typename S>
absl::Status CheckHealRun(const HealAttention<S>& a, const HealParams<S>& p,
                          int64_t train_rows, int64_t heldout_rows,
                          const HealOptions& options) {
  CARE_RETURN_IF_ERROR(CheckHealShapes(a, p));
  const int64_t t_len = a.seq_len;
  if (train_rows / t_len < 1 || heldout_rows < t_len ||
      train_rows % t_len != 0 || heldout_rows % t_len != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "healing needs whole windows of ", t_len, " tokens: ", train_rows,
        " training and ", heldout_rows, " held-out tokens"));
  }
  if (options.max_steps < 0 || options.batch_windows < 1 ||
      options.eval_every < 1 || options.patience < 1 ||
      !(options.learning_rate > 0)) {
    return absl::InvalidArgumentError(
        "healing: steps >= 0, batch windows, eval period and patience >= 1 "
        "and a positive learning rate are required");
  }
  return absl::OkStatus();
}

template <typename S>
absl::StatusOr<HealResult> RunHealSchedule(const HealParams<S>& start,
                                           int64_t train_windows,
                                           const HealOptions& options,
                                           const HealLoop& loop) {
  HealResult result;
  CARE_ASSIGN_OR_RETURN(result.heldout_before, loop.heldout());
  result.heldout_after = result.heldout_before;
  CARE_RETURN_IF_ERROR(loop.keep());

  // Per-block step: a fraction of the block's starting RMS, so layers and
  // blocks of any scale move alike.
  std::array<double, kHealBlocks> step_size{};
  for (int i = 0; i < kHealBlocks; ++i) {
    const HealMatrix<S>& b = start.block(i);
    const double rms = b.size() > 0
                           ? std::sqrt(b.template cast<double>().squaredNorm() /
                                       static_cast<double>(b.size()))
                           : 0;
    step_size[i] = options.learning_rate * (rms > 0 ? rms : 1e-3);
  }
  std::vector<int64_t> order(train_windows);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(options.seed);
  std::shuffle(order.begin(), order.end(), rng);
  int64_t cursor = 0, stale = 0;
  std::vector<int64_t> batch(std::min(options.batch_windows, train_windows));
  for (int64_t step = 1; step <= options.max_steps; ++step) {
    for (int64_t& w : batch) {
      if (cursor == train_windows) {
        std::shuffle(order.begin(), order.end(), rng);
        cursor = 0;
      }
      w = order[cursor++];
    }
    HealStep s;
    s.step = step;
    s.windows = batch;
    const double lr_scale =
        0.5 * (1 + std::cos(kPi * static_cast<double>(step - 1) /
                            static_cast<double>(options.max_steps)));
    for (int i = 0; i < kHealBlocks; ++i) s.lr[i] = step_size[i] * lr_scale;
    s.correction1 = 1 - std::pow(kHealBeta1, static_cast<double>(step));
    s.correction2 = 1 - std::pow(kHealBeta2, static_cast<double>(step));
    if (step == 1) s.train_before = &result.train_before;
    CARE_RETURN_IF_ERROR(loop.step(s));
    result.steps = step;
    if (step % options.eval_every == 0 || step == options.max_steps) {
      CARE_ASSIGN_OR_RETURN(const double held, loop.heldout());
      if (std::isfinite(held) && held < result.heldout_after) {
        result.heldout_after = held;
        result.best_step = step;
        CARE_RETURN_IF_ERROR(loop.keep());
        stale = 0;
      } else if (++stale >= options.patience) {
        if (options.on_step) CARE_RETURN_IF_ERROR(options.on_step(step));
        break;
      }
    }
    if (options.on_step) CARE_RETURN_IF_ERROR(options.on_step(step));
  }
  return result;
}

#define CARE_HEAL_SCHEDULE_INSTANTIATE(S)                              \
  template absl::Status CheckHealRun<S>(const HealAttention<S>&,       \
                                        const HealParams<S>&, int64_t, \
                                        int64_t, const HealOptions&);  \
  template absl::StatusOr<HealResult> RunHealSchedule<S>(              \
      const HealParams<S>&, int64_t, const HealOptions&, const HealLoop&);

CARE_HEAL_SCHEDULE_INSTANTIATE(float)
CARE_HEAL_SCHEDULE_INSTANTIATE(double)
#undef CARE_HEAL_SCHEDULE_INSTANTIATE

}  // namespace care::convert::mla
