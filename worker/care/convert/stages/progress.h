// Progress, cancellation and timing shared by the conversion stages
// (stages.h): each stage reports under its own name, and its share of the
// whole run (kStageShares in progress.cc) turns per-stage steps into
// ConvertProgress::overall.
#ifndef CARE_CONVERT_STAGES_PROGRESS_H_
#define CARE_CONVERT_STAGES_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "care/convert/calibrate.h"
#include "care/convert/pipeline.h"
#include "care/convert/report.h"
#include "care/io/model_config.h"

namespace care::convert::stage {

class StageProgress {
 public:
  StageProgress(const ProgressCallback& progress, const CancelCheck& cancelled)
      : progress_(progress), cancelled_(cancelled) {}

  // Starts the clock of a stage's achieved rate (ConvertProgress::seconds).
  void Begin(const std::string& stage);
  void AddFlops(const std::string& stage, double flops);
  double Flops(const std::string& stage) const;
  void set_resumed_layers(int64_t n) { resumed_layers_ = n; }

  // Emits progress, then checks cancellation (CancelledError naming the
  // stage and step).
  absl::Status Step(absl::string_view stage, int64_t step, int64_t total);

  // A LayerCallback for a pass of `total` layers that is pass `pass` of
  // `passes` in the stage; `flops(l)` is layer l's share of the pass.
  LayerCallback Layers(std::string stage, int64_t total, int64_t pass = 0,
                       int64_t passes = 1,
                       std::function<double(int64_t)> flops = nullptr);

 private:
  using Clock = std::chrono::steady_clock;
  const ProgressCallback& progress_;
  const CancelCheck& cancelled_;
  std::map<std::string, Clock::time_point> started_;
  std::map<std::string, double> flops_;
  int64_t resumed_layers_ = 0;
};

// Wall time of one stage, from construction to Done, as a report timing.
class StageTimer {
 public:
  StageTimer() : start_(std::chrono::steady_clock::now()) {}
  void Done(const char* stage, ConversionReport* report, double flops = 0);

 private:
  std::chrono::steady_clock::time_point start_;
};

// Layer l's useful FLOPs in one forward over `tokens` tokens in windows of
// seq_len, plus `extra` per layer (flop_model.h). `config` must outlive it.
std::function<double(int64_t)> ForwardLayerFlops(const ModelConfig& config,
                                                 int64_t tokens,
                                                 int64_t seq_len,
                                                 double extra = 0);

}  // namespace care::convert::stage

#endif  // CARE_CONVERT_STAGES_PROGRESS_H_
