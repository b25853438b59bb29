// Zero-shot task accuracy of the original and of the converted model in the
// evaluate stage (docs/conversion.md "Task accuracy"): each task file of
// ConvertOptions::eval_tasks is read and tokenized once, then scored by the
// original model and by the model with the converted K/V projectors, on the
// same requests (care/eval/multiple_choice.h).
#ifndef CARE_CONVERT_TASK_ACCURACY_H_
#define CARE_CONVERT_TASK_ACCURACY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/convert/latent_layer.h"
#include "care/convert/report.h"
#include "care/engine/engine.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert {

// One task of a conversion's evaluation (JobSpec evaluation.tasks).
struct TaskEvalSpec {
  std::string name;             // "" = the file's stem
  std::string path;             // local JSONL file
  std::string format = "auto";  // care::eval::ParseTaskFormat names
  int64_t limit = 0;            // first N items; 0 = all
};

// Called after every engine pass with the task's name; a non-OK status
// (cancellation) stops the evaluation.
using TaskPassCallback = std::function<absl::Status(const std::string&)>;

// Reads every task file (cheap): a bad file or format fails the conversion
// before its expensive stages, naming the file, line and field.
absl::Status CheckTaskFiles(const std::vector<TaskEvalSpec>& tasks);

// Scores every task with the original model and with `layers` as the K/V
// projectors. The tokenizer is loaded from `model_dir`. Errors name the task
// file (and its line, for bad records).
absl::StatusOr<std::vector<TaskAccuracyReport>> EvaluateTaskAccuracy(
    const std::vector<TaskEvalSpec>& tasks, const ModelConfig& config,
    const TensorSource& weights, const std::string& model_dir,
    const std::vector<LatentLayer>& layers, const engine::EngineOptions& engine,
    const TaskPassCallback& on_pass);

}  // namespace care::convert

#endif  // CARE_CONVERT_TASK_ACCURACY_H_
