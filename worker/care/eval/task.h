// Zero-shot multiple-choice tasks (docs/engine.md "Task accuracy"): the
// items of a local JSONL task file, in the request form lm-evaluation-harness
// builds from a dataset's doc_to_text / doc_to_choice / doc_to_target.
//
// Every item becomes one loglikelihood request per choice: (context,
// continuation), only the continuation's tokens scored. Ordinary tasks share
// one context and differ in the continuation (target delimiter " " + choice
// text); WinoGrande's "partial" scoring differs in the context (the sentence
// up to the blank, filled with each option) and shares the continuation (the
// rest of the sentence).
#ifndef CARE_EVAL_TASK_H_
#define CARE_EVAL_TASK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::eval {

// Field layouts of the JSONL files TaskReader understands.
enum class TaskFormat {
  kAuto,        // detected from the first record's fields
  kGeneric,     // {"context", "choices": [...], "label"} or partial:
                // {"contexts": [...], "continuation", "label"}
  kArc,         // ARC-Easy / ARC-Challenge
  kHellaSwag,   // with lm-eval's preprocessing
  kPiqa,        //
  kWinoGrande,  // partial scoring
  kBoolQ,       //
  kOpenBookQa,  //
};

// "auto", "generic", "arc", "hellaswag", "piqa", "winogrande", "boolq",
// "openbookqa"; InvalidArgument listing them otherwise.
absl::StatusOr<TaskFormat> ParseTaskFormat(absl::string_view name);
std::string TaskFormatName(TaskFormat format);

// One loglikelihood request: log P(continuation | context).
struct Request {
  std::string context;
  std::string continuation;
};

struct TaskItem {
  // One per choice, in choice order.
  std::vector<Request> requests;
  // acc_norm divides each choice's log-likelihood by its length: the length
  // of lm-eval's doc_to_choice string (the choice text without the target
  // delimiter; WinoGrande: the filled-in partial sentence), counted in
  // Unicode code points as Python's len() does (= bytes for ASCII).
  std::vector<double> choice_lengths;
  int64_t label = 0;  // index of the correct choice
  int64_t line = 0;   // 1-based line of the source file
};

struct Task {
  std::string name;  // the file's stem unless set
  std::string path;
  TaskFormat format = TaskFormat::kGeneric;  // as read (never kAuto)
  std::vector<TaskItem> items;
};

// Reads a JSONL task file (blank lines skipped). limit > 0 keeps the first
// `limit` items. Errors name the file, the 1-based line and the field:
// "arc.jsonl:12: field 'answerKey': 'E' is not one of the choice labels".
absl::StatusOr<Task> ReadTaskFile(const std::string& path,
                                  TaskFormat format = TaskFormat::kAuto,
                                  int64_t limit = 0);

// lm-eval's HellaSwag preprocess(): strip, " [title]" -> ". ", drop "[...]"
// spans, "  " -> " ".
std::string HellaSwagPreprocess(absl::string_view text);

// Unicode code points of UTF-8 text (Python len() of the decoded string).
int64_t CodePoints(absl::string_view utf8);

}  // namespace care::eval

#endif  // CARE_EVAL_TASK_H_
