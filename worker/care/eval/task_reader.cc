// JSONL task readers: one function per dataset layout, each building the
// requests lm-evaluation-harness builds for that task (its yaml's
// doc_to_text / doc_to_choice / doc_to_target, target_delimiter " ").
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "care/eval/task.h"

namespace care::eval {
namespace {

using nlohmann::json;

constexpr char kDelimiter[] = " ";  // lm-eval's default target_delimiter

struct FormatName {
  TaskFormat format;
  const char* name;
};
constexpr FormatName kFormats[] = {
    {TaskFormat::kAuto, "auto"},   {TaskFormat::kGeneric, "generic"},
    {TaskFormat::kArc, "arc"},     {TaskFormat::kHellaSwag, "hellaswag"},
    {TaskFormat::kPiqa, "piqa"},   {TaskFormat::kWinoGrande, "winogrande"},
    {TaskFormat::kBoolQ, "boolq"}, {TaskFormat::kOpenBookQa, "openbookqa"},
};

// Errors of one record: "<file>:<line>: field '<f>': <message>".
class Record {
 public:
  Record(const json& j, const std::string& file, int64_t line)
      : j_(j), file_(file), line_(line) {}

  absl::Status Error(absl::string_view field, absl::string_view msg) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ":", line_, ": field '", field, "': ", msg));
  }
  bool Has(const char* field) const { return j_.contains(field); }
  const json& Get(const char* field) const { return j_.at(field); }

  absl::StatusOr<std::string> String(const char* field) const {
    auto it = j_.find(field);
    if (it == j_.end()) return Error(field, "missing");
    if (!it->is_string()) return Error(field, "not a string");
    return it->get<std::string>();
  }
  absl::StatusOr<std::vector<std::string>> Strings(const json& v,
                                                   const std::string& field,
                                                   size_t min_size) const {
    if (!v.is_array()) return Error(field, "not an array of strings");
    std::vector<std::string> out;
    for (const json& e : v) {
      if (!e.is_string()) return Error(field, "not an array of strings");
      out.push_back(e.get<std::string>());
    }
    if (out.size() < min_size) {
      return Error(field, absl::StrCat("has ", out.size(),
                                       " entries, needs at least ", min_size));
    }
    return out;
  }
  absl::StatusOr<std::vector<std::string>> Strings(const char* field,
                                                   size_t min_size) const {
    auto it = j_.find(field);
    if (it == j_.end()) return Error(field, "missing");
    return Strings(*it, field, min_size);
  }
  // An index in [0, n): an integer or a string of digits (HF exports write
  // both).
  absl::StatusOr<int64_t> Index(const char* field, int64_t n,
                                int64_t offset = 0) const {
    auto it = j_.find(field);
    if (it == j_.end()) return Error(field, "missing");
    int64_t v = 0;
    const std::string digits = it->is_string() ? it->get<std::string>() : "";
    if (it->is_number_integer()) {
      v = it->get<int64_t>();
    } else if (!digits.empty() && digits.size() < 10 &&
               std::all_of(digits.begin(), digits.end(),
                           [](char c) { return c >= '0' && c <= '9'; })) {
      v = std::stoll(digits);
    } else {
      return Error(field, "not an integer");
    }
    v -= offset;
    if (v < 0 || v >= n) {
      return Error(field, absl::StrCat(it->dump(), " is outside [", offset,
                                       ", ", n + offset, ")"));
    }
    return v;
  }

 private:
  const json& j_;
  const std::string& file_;
  int64_t line_;
};

// Ordinary multiple choice: one context, continuation " " + choice.
TaskItem SharedContext(const std::string& context,
                       const std::vector<std::string>& choices, int64_t label) {
  TaskItem item;
  for (const std::string& c : choices) {
    item.requests.push_back({context, kDelimiter + c});
    item.choice_lengths.push_back(static_cast<double>(CodePoints(c)));
  }
  item.label = label;
  return item;
}

// Partial scoring: contexts differ, continuation " " + rest shared; the
// normalizing lengths are those of the contexts (lm-eval's doc_to_choice).
TaskItem SharedContinuation(const std::vector<std::string>& contexts,
                            const std::string& continuation, int64_t label) {
  TaskItem item;
  for (const std::string& c : contexts) {
    item.requests.push_back({c, kDelimiter + continuation});
    item.choice_lengths.push_back(static_cast<double>(CodePoints(c)));
  }
  item.label = label;
  return item;
}

absl::StatusOr<TaskItem> ReadGeneric(const Record& r) {
  if (r.Has("contexts")) {
    CARE_ASSIGN_OR_RETURN(auto contexts, r.Strings("contexts", 2));
    CARE_ASSIGN_OR_RETURN(std::string cont, r.String("continuation"));
    CARE_ASSIGN_OR_RETURN(int64_t label, r.Index("label", contexts.size()));
    return SharedContinuation(contexts, cont, label);
  }
  CARE_ASSIGN_OR_RETURN(std::string context, r.String("context"));
  CARE_ASSIGN_OR_RETURN(auto choices, r.Strings("choices", 2));
  CARE_ASSIGN_OR_RETURN(int64_t label, r.Index("label", choices.size()));
  return SharedContext(context, choices, label);
}

// {"text": [...], "label": [...]} (HF) or [{"text", "label"}, ...]
// (the original ARC / OpenBookQA JSONL).
absl::StatusOr<std::pair<std::vector<std::string>, std::vector<std::string>>>
ChoiceTextsAndLabels(const Record& r, const json& choices,
                     const std::string& field) {
  std::vector<std::string> texts, labels;
  if (choices.is_object()) {
    if (!choices.contains("text")) return r.Error(field + ".text", "missing");
    if (!choices.contains("label")) {
      return r.Error(field + ".label", "missing");
    }
    CARE_ASSIGN_OR_RETURN(texts,
                          r.Strings(choices.at("text"), field + ".text", 2));
    CARE_ASSIGN_OR_RETURN(labels,
                          r.Strings(choices.at("label"), field + ".label", 2));
    if (texts.size() != labels.size()) {
      return r.Error(field, absl::StrCat(texts.size(), " texts but ",
                                         labels.size(), " labels"));
    }
  } else if (choices.is_array()) {
    for (const json& c : choices) {
      if (!c.is_object() || !c.contains("text") || !c.contains("label") ||
          !c.at("text").is_string() || !c.at("label").is_string()) {
        return r.Error(field, "entries need string 'text' and 'label'");
      }
      texts.push_back(c.at("text").get<std::string>());
      labels.push_back(c.at("label").get<std::string>());
    }
    if (texts.size() < 2) return r.Error(field, "fewer than 2 choices");
  } else {
    return r.Error(field, "not an object {text, label} or an array");
  }
  return std::make_pair(std::move(texts), std::move(labels));
}

absl::StatusOr<int64_t> AnswerIndex(const Record& r,
                                    const std::vector<std::string>& labels) {
  CARE_ASSIGN_OR_RETURN(std::string key, r.String("answerKey"));
  key = std::string(absl::StripLeadingAsciiWhitespace(key));  // OBQA lstrip
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == key) return static_cast<int64_t>(i);
  }
  return r.Error("answerKey",
                 absl::StrCat("'", key, "' is not one of the choice labels [",
                              absl::StrJoin(labels, ", "), "]"));
}

// Question text and choices of ARC / OpenBookQA: HF layout (question string
// or question_stem, top-level choices) or original (question: {stem,
// choices}).
absl::StatusOr<TaskItem> ReadQuestionChoices(const Record& r, bool arc) {
  std::string stem;
  const json* choices = nullptr;
  std::string choices_field = "choices";
  const char* stem_field = arc ? "question" : "question_stem";
  if (r.Has("question") && r.Get("question").is_object()) {
    const json& q = r.Get("question");
    if (!q.contains("stem") || !q.at("stem").is_string()) {
      return r.Error("question.stem", "missing or not a string");
    }
    stem = q.at("stem").get<std::string>();
    if (!q.contains("choices")) return r.Error("question.choices", "missing");
    choices = &q.at("choices");
    choices_field = "question.choices";
  } else {
    CARE_ASSIGN_OR_RETURN(stem, r.String(stem_field));
    if (!r.Has("choices")) return r.Error("choices", "missing");
    choices = &r.Get("choices");
  }
  CARE_ASSIGN_OR_RETURN(auto tl,
                        ChoiceTextsAndLabels(r, *choices, choices_field));
  CARE_ASSIGN_OR_RETURN(int64_t label, AnswerIndex(r, tl.second));
  // arc_easy.yaml: "Question: {{question}}\nAnswer:"; openbookqa.yaml:
  // question_stem alone.
  const std::string context =
      arc ? absl::StrCat("Question: ", stem, "\nAnswer:") : stem;
  return SharedContext(context, tl.first, label);
}

// Python's str.capitalize() for ASCII: first upper, the rest lower.
std::string Capitalize(absl::string_view s) {
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char c = out[i];
    if (c >= 0x80) continue;  // non-ASCII left as is
    out[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
  }
  return out;
}

absl::StatusOr<TaskItem> ReadHellaSwag(const Record& r) {
  CARE_ASSIGN_OR_RETURN(std::string activity, r.String("activity_label"));
  CARE_ASSIGN_OR_RETURN(std::string ctx_a, r.String("ctx_a"));
  CARE_ASSIGN_OR_RETURN(std::string ctx_b, r.String("ctx_b"));
  CARE_ASSIGN_OR_RETURN(auto endings, r.Strings("endings", 2));
  CARE_ASSIGN_OR_RETURN(int64_t label, r.Index("label", endings.size()));
  const std::string query = HellaSwagPreprocess(
      absl::StrCat(activity, ": ", ctx_a, " ", Capitalize(ctx_b)));
  for (std::string& e : endings) e = HellaSwagPreprocess(e);
  return SharedContext(query, endings, label);
}

absl::StatusOr<TaskItem> ReadPiqa(const Record& r) {
  CARE_ASSIGN_OR_RETURN(std::string goal, r.String("goal"));
  CARE_ASSIGN_OR_RETURN(std::string sol1, r.String("sol1"));
  CARE_ASSIGN_OR_RETURN(std::string sol2, r.String("sol2"));
  CARE_ASSIGN_OR_RETURN(int64_t label, r.Index("label", 2));
  return SharedContext(absl::StrCat("Question: ", goal, "\nAnswer:"),
                       {sol1, sol2}, label);
}

absl::StatusOr<TaskItem> ReadWinoGrande(const Record& r) {
  CARE_ASSIGN_OR_RETURN(std::string sentence, r.String("sentence"));
  CARE_ASSIGN_OR_RETURN(std::string option1, r.String("option1"));
  CARE_ASSIGN_OR_RETURN(std::string option2, r.String("option2"));
  CARE_ASSIGN_OR_RETURN(int64_t label, r.Index("answer", 2, /*offset=*/1));
  const size_t blank = sentence.find('_');
  if (blank == std::string::npos) {
    return r.Error("sentence", "has no '_' blank");
  }
  // winogrande preprocess: the sentence up to the blank filled with each
  // option; the rest after the blank, stripped, is the shared continuation.
  const std::string prefix = sentence.substr(0, blank);
  const std::string rest(absl::StripAsciiWhitespace(
      absl::string_view(sentence).substr(blank + 1)));
  return SharedContinuation({prefix + option1, prefix + option2}, rest, label);
}

absl::StatusOr<TaskItem> ReadBoolQ(const Record& r) {
  CARE_ASSIGN_OR_RETURN(std::string passage, r.String("passage"));
  CARE_ASSIGN_OR_RETURN(std::string question, r.String("question"));
  int64_t label = 0;
  if (r.Has("label")) {
    CARE_ASSIGN_OR_RETURN(label, r.Index("label", 2));
  } else if (r.Has("answer") && r.Get("answer").is_boolean()) {
    label = r.Get("answer").get<bool>() ? 1 : 0;  // google/boolq layout
  } else {
    return r.Error("label", "missing (nor a boolean 'answer')");
  }
  return SharedContext(
      absl::StrCat(passage, "\nQuestion: ", question, "?\nAnswer:"),
      {"no", "yes"}, label);
}

absl::StatusOr<TaskItem> ReadItem(TaskFormat format, const Record& r) {
  switch (format) {
    case TaskFormat::kGeneric:
      return ReadGeneric(r);
    case TaskFormat::kArc:
      return ReadQuestionChoices(r, /*arc=*/true);
    case TaskFormat::kOpenBookQa:
      return ReadQuestionChoices(r, /*arc=*/false);
    case TaskFormat::kHellaSwag:
      return ReadHellaSwag(r);
    case TaskFormat::kPiqa:
      return ReadPiqa(r);
    case TaskFormat::kWinoGrande:
      return ReadWinoGrande(r);
    case TaskFormat::kBoolQ:
      return ReadBoolQ(r);
    case TaskFormat::kAuto:
      break;
  }
  return absl::InternalError("task format not resolved");
}

// The layout whose distinctive fields the record has.
absl::StatusOr<TaskFormat> Detect(const json& j, const std::string& where) {
  auto has = [&](const char* f) { return j.contains(f); };
  if (has("ctx_a") && has("endings")) return TaskFormat::kHellaSwag;
  if (has("goal") && has("sol1")) return TaskFormat::kPiqa;
  if (has("sentence") && has("option1")) return TaskFormat::kWinoGrande;
  if (has("passage") && has("question")) return TaskFormat::kBoolQ;
  if (has("question_stem")) return TaskFormat::kOpenBookQa;
  if (has("answerKey") && has("question")) return TaskFormat::kArc;
  if ((has("context") && has("choices")) || has("contexts")) {
    return TaskFormat::kGeneric;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where,
      ": cannot tell the task format from the fields; pass a format "
      "(generic, arc, hellaswag, piqa, winogrande, boolq, openbookqa)"));
}

}  // namespace

absl::StatusOr<TaskFormat> ParseTaskFormat(absl::string_view name) {
  for (const FormatName& f : kFormats) {
    if (name == f.name) return f.format;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown task format '", name,
      "' (allowed: auto, generic, arc, hellaswag, piqa, winogrande, boolq, "
      "openbookqa)"));
}

std::string TaskFormatName(TaskFormat format) {
  for (const FormatName& f : kFormats) {
    if (format == f.format) return f.name;
  }
  return "unknown";
}

int64_t CodePoints(absl::string_view utf8) {
  int64_t n = 0;
  for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;  // lead bytes only
  return n;
}

std::string HellaSwagPreprocess(absl::string_view text) {
  std::string s(absl::StripAsciiWhitespace(text));
  s = absl::StrReplaceAll(s, {{" [title]", ". "}});
  // re.sub("\\[.*?\\]", "", s): from a '[' to the next ']' on the same line.
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != ']' && s[j] != '\n') ++j;
      if (j < s.size() && s[j] == ']') {
        i = j;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return absl::StrReplaceAll(out, {{"  ", " "}});
}

absl::StatusOr<Task> ReadTaskFile(const std::string& path, TaskFormat format,
                                  int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open task file ", path));
  }
  Task task;
  task.path = path;
  task.name = std::filesystem::path(path).stem().string();
  std::string line;
  int64_t line_no = 0;
  bool resolved = format != TaskFormat::kAuto;
  while (std::getline(in, line)) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (limit > 0 && static_cast<int64_t>(task.items.size()) >= limit) break;
    const std::string where = absl::StrCat(path, ":", line_no);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": not a JSON object"));
    }
    if (!resolved) {
      CARE_ASSIGN_OR_RETURN(format, Detect(j, where));
      resolved = true;
    }
    const Record record(j, path, line_no);
    CARE_ASSIGN_OR_RETURN(TaskItem item, ReadItem(format, record));
    item.line = line_no;
    task.items.push_back(std::move(item));
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("reading ", path, " failed"));
  }
  if (task.items.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task file ", path, " has no items"));
  }
  task.format = format;
  return task;
}

}  // namespace care::eval
