#include "care/convert/stages/progress.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "care/convert/flop_model.h"

namespace care::convert::stage {
namespace {

// Share of the whole run per stage, for ConvertProgress::overall; a new
// stage takes its share from its neighbours (the widths sum to 1).
struct StageShare {
  const char* name;
  double begin, width;
};
// "heal" (deepseek-v3 --heal local) shares the slot of "sequential", which
// runs with the latent layout only.
constexpr StageShare kStageShares[] = {
    {"load", 0.00, 0.02},     {"calibrate", 0.02, 0.38},
    {"allocate", 0.40, 0.10}, {"sequential", 0.50, 0.05},
    {"heal", 0.50, 0.05},     {"evaluate", 0.55, 0.35},
    {"write", 0.90, 0.10}};

}  // namespace

void StageProgress::Begin(const std::string& stage) {
  started_[stage] = Clock::now();
}

void StageProgress::AddFlops(const std::string& stage, double flops) {
  flops_[stage] += flops;
}

double StageProgress::Flops(const std::string& stage) const {
  auto it = flops_.find(stage);
  return it == flops_.end() ? 0 : it->second;
}

absl::Status StageProgress::Step(absl::string_view stage, int64_t step,
                                 int64_t total) {
  if (progress_) {
    ConvertProgress p;
    p.stage = std::string(stage);
    p.step = step;
    p.total = total;
    p.flops = Flops(p.stage);
    auto started = started_.try_emplace(p.stage, Clock::now()).first;
    p.seconds =
        std::chrono::duration<double>(Clock::now() - started->second).count();
    p.resumed_layers = resumed_layers_;
    for (const StageShare& s : kStageShares) {
      if (stage == s.name) {
        p.overall = s.begin + s.width * (total > 0 ? double(step) / total : 1);
      }
    }
    progress_(p);
  }
  if (cancelled_ && cancelled_()) {
    return absl::CancelledError(absl::StrCat(
        "conversion cancelled during ", stage, " (", step, "/", total, ")"));
  }
  return absl::OkStatus();
}

LayerCallback StageProgress::Layers(std::string stage, int64_t total,
                                    int64_t pass, int64_t passes,
                                    std::function<double(int64_t)> flops) {
  return [this, stage = std::move(stage), total, pass, passes,
          flops = std::move(flops)](int64_t l) {
    if (flops) AddFlops(stage, flops(l));
    return Step(stage, pass * total + l + 1, passes * total);
  };
}

void StageTimer::Done(const char* stage, ConversionReport* report,
                      double flops) {
  report->timings.push_back(
      {stage,
       std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
           .count(),
       flops});
}

std::function<double(int64_t)> ForwardLayerFlops(const ModelConfig& config,
                                                 int64_t tokens,
                                                 int64_t seq_len,
                                                 double extra) {
  return [&config, tokens, seq_len, extra](int64_t l) {
    return static_cast<double>(tokens) *
               LayerFlopsPerToken(config, seq_len, l) +
           extra;
  };
}

}  // namespace care::convert::stage
