// The task-accuracy part of the evaluate stage: every evaluation task scored
// by the original and by the converted model (task_accuracy.h), after the
// perplexity windows. Its seconds are added to the evaluate timing.
#include <chrono>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "care/convert/stages/stages.h"
#include "care/convert/task_accuracy.h"

namespace care::convert::stage {

absl::Status EvaluateTasks(const ConvertOptions& options, const Inputs& in,
                           const std::vector<LatentLayer>& layers,
                           StageProgress& progress, ConversionReport* report) {
  if (options.eval_tasks.empty()) return absl::OkStatus();
  const auto start = std::chrono::steady_clock::now();
  int64_t passes = 0;
  CARE_ASSIGN_OR_RETURN(
      report->tasks, EvaluateTaskAccuracy(options.eval_tasks, in.config(),
                                          in.weights(), in.model_dir, layers,
                                          in.engine, [&](const std::string&) {
                                            ++passes;
                                            return progress.Step(
                                                "evaluate", passes, passes);
                                          }));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  for (StageTiming& t : report->timings) {
    if (t.stage == "evaluate") t.seconds += seconds;
  }
  return absl::OkStatus();
}

}  // namespace care::convert::stage
