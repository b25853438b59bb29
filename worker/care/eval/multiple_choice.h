// Zero-shot multiple-choice accuracy as lm-evaluation-harness computes it
// (docs/engine.md "Task accuracy"):
//   - each request (context, continuation) is tokenized as lm-eval's
//     _encode_pair does: trailing whitespace of the context moves to the
//     continuation, whole = enc(context + continuation), context_enc =
//     enc(context), continuation_enc = whole[len(context_enc):]; an empty
//     context becomes the prefix token (BOS);
//   - the model reads (context_enc + continuation_enc)[-(max_length+1):][:-1]
//     and only the continuation's tokens are scored: ll = sum log p;
//   - acc: argmax_i ll_i == label; acc_norm: argmax_i ll_i / len_i == label
//     (len_i: TaskItem::choice_lengths); ties go to the first choice
//     (numpy.argmax);
//   - the standard errors are the sample standard deviation (n-1) of the
//     per-item 0/1 scores over sqrt(n) (lm-eval's mean_stderr).
#ifndef CARE_EVAL_MULTIPLE_CHOICE_H_
#define CARE_EVAL_MULTIPLE_CHOICE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/eval/sequences.h"
#include "care/eval/task.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"
#include "care/tokenizer/tokenizer.h"

namespace care::eval {

struct EncodeOptions {
  // Prepend BOS to every context (lm-eval's add_bos_token; off by default
  // there for Hugging Face models).
  bool prepend_bos = false;
  // BOS id: the prefix of an empty context and of prepend_bos. Unset: the
  // tokenizer's.
  std::optional<int32_t> bos_id;
};

struct EncodedRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;  // non-empty
};

struct EncodedItem {
  std::vector<EncodedRequest> requests;
  std::vector<double> choice_lengths;
  int64_t label = 0;
};

struct EncodedTask {
  std::string name;
  std::string format;
  std::vector<EncodedItem> items;
};

// Tokenizes every request (each distinct context once per item). Errors name
// the task file and line (e.g. a continuation that encodes to no tokens).
absl::StatusOr<EncodedTask> EncodeTask(const Task& task,
                                       const tok::Tokenizer& tokenizer,
                                       const EncodeOptions& options = {});

struct ItemScore {
  std::vector<double> loglikelihoods;  // one per choice
  int64_t pred = 0, pred_norm = 0;
};

struct TaskResult {
  std::string name;
  std::string format;
  int64_t items = 0;
  double acc = 0, acc_stderr = 0;
  double acc_norm = 0, acc_norm_stderr = 0;
  std::vector<ItemScore> scores;  // one per item
};

// max_length: model inputs per request (lm-eval's max_length); 0 = the
// config's max_position_embeddings, or 2048 when it has none.
absl::StatusOr<TaskResult> ScoreTask(const ModelConfig& config,
                                     const TensorSource& weights,
                                     const EncodedTask& task,
                                     const SequenceOptions& options,
                                     int64_t max_length = 0);

// acc / acc_norm and their standard errors from per-item scores.
void Aggregate(const std::vector<EncodedItem>& items, TaskResult* result);

// Sample standard deviation (n-1) / sqrt(n); 0 when n < 2.
double MeanStderr(const std::vector<double>& values);

}  // namespace care::eval

#endif  // CARE_EVAL_MULTIPLE_CHOICE_H_
