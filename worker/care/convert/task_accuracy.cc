#include "care/convert/task_accuracy.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/eval/multiple_choice.h"
#include "care/eval/task.h"
#include "care/tokenizer/tokenizer.h"

namespace care::convert {
namespace {

TaskScore ToScore(const eval::TaskResult& r) {
  return {r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr};
}

}  // namespace

absl::Status CheckTaskFiles(const std::vector<TaskEvalSpec>& tasks) {
  for (const TaskEvalSpec& spec : tasks) {
    CARE_ASSIGN_OR_RETURN(eval::TaskFormat format,
                          eval::ParseTaskFormat(spec.format));
    CARE_RETURN_IF_ERROR(
        eval::ReadTaskFile(spec.path, format, spec.limit).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TaskAccuracyReport>> EvaluateTaskAccuracy(
    const std::vector<TaskEvalSpec>& tasks, const ModelConfig& config,
    const TensorSource& weights, const std::string& model_dir,
    const std::vector<LatentLayer>& layers, const engine::EngineOptions& engine,
    const TaskPassCallback& on_pass) {
  std::vector<TaskAccuracyReport> out;
  if (tasks.empty()) return out;
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> tokenizer =
      tok::LoadTokenizer(model_dir);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat("evaluation.tasks need the model's "
                                     "tokenizer: ",
                                     tokenizer.status().message()));
  }
  std::optional<int32_t> bos;
  if (config.bos_token_id) bos = static_cast<int32_t>(*config.bos_token_id);
  for (const TaskEvalSpec& spec : tasks) {
    CARE_ASSIGN_OR_RETURN(eval::TaskFormat format,
                          eval::ParseTaskFormat(spec.format));
    CARE_ASSIGN_OR_RETURN(eval::Task task,
                          eval::ReadTaskFile(spec.path, format, spec.limit));
    if (!spec.name.empty()) task.name = spec.name;
    CARE_ASSIGN_OR_RETURN(
        eval::EncodedTask encoded,
        eval::EncodeTask(task, **tokenizer,
                         {.prepend_bos = false, .bos_id = bos}));
    eval::SequenceOptions so;
    so.engine = engine;
    if (on_pass) {
      so.on_pass = [&](int64_t, int64_t) { return on_pass(task.name); };
    }
    CARE_ASSIGN_OR_RETURN(eval::TaskResult original,
                          eval::ScoreTask(config, weights, encoded, so));
    so.hooks.make_kv_projector =
        [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
      return layers[l].MakeProjector();
    };
    CARE_ASSIGN_OR_RETURN(eval::TaskResult converted,
                          eval::ScoreTask(config, weights, encoded, so));
    TaskAccuracyReport r;
    r.name = task.name;
    r.path = spec.path;
    r.format = encoded.format;
    r.items = original.items;
    r.original = ToScore(original);
    r.converted = ToScore(converted);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace care::convert
