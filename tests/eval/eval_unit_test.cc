// care/eval without a model: the JSONL readers build the requests
// lm-evaluation-harness builds (prompt templates, HellaSwag preprocessing,
// WinoGrande partial scoring), errors name file, line and field; rolling
// windows score every token once with the context each protocol gives;
// lm-eval's word count, WikiText pages and detokenizer; acc / stderr.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "care/eval/multiple_choice.h"
#include "care/eval/rolling.h"
#include "care/eval/task.h"
#include "support/fixtures.h"

namespace care::eval {
namespace {

std::string Data(const std::string& name) {
  return std::string(CARE_EVAL_TESTDATA) + "/" + name;
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    dir_ = ::care::testing::MakeTempDir("eval_unit");
    path_ = dir_ + "/task.jsonl";
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

TEST(TaskReaderTest, ArcBothLayoutsPromptAndAnswerKey) {
  absl::StatusOr<Task> t = ReadTaskFile(Data("arc.jsonl"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->format, TaskFormat::kArc);
  EXPECT_EQ(t->name, "arc");
  ASSERT_EQ(t->items.size(), 3u);
  const TaskItem& a = t->items[0];
  ASSERT_EQ(a.requests.size(), 4u);
  EXPECT_EQ(a.requests[1].context,
            "Question: Tim had a red ball. What color was the ball?\nAnswer:");
  EXPECT_EQ(a.requests[1].continuation, " red");
  EXPECT_EQ(a.label, 1);
  EXPECT_EQ(a.choice_lengths, (std::vector<double>{4, 3, 5, 3}));
  EXPECT_EQ(a.line, 1);
  // The original ARC layout (question.stem, [{text, label}]), numeric keys.
  EXPECT_EQ(t->items[1].label, 1);
  EXPECT_EQ(t->items[1].requests[1].continuation, " Lily and her mom");
}

TEST(TaskReaderTest, HellaSwagPreprocessing) {
  absl::StatusOr<Task> t = ReadTaskFile(Data("hellaswag.jsonl"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->format, TaskFormat::kHellaSwag);
  // activity_label + ": " + ctx_a + " " + ctx_b.capitalize().
  EXPECT_EQ(t->items[0].requests[0].context,
            "Playing outside: Tom and Sue went to the park. They");
  // " [title]" -> ". ", then "[...]" dropped, then "  " -> " ".
  EXPECT_EQ(t->items[0].requests[1].continuation, " ate the moon. at night.");
  EXPECT_EQ(t->items[0].requests[2].continuation, " flew to the sky in a car.");
  EXPECT_EQ(t->items[1].requests[0].context,
            "Baking: Mom made a cake. The cake was big. She gave");
  EXPECT_EQ(t->items[1].label, 0);
  EXPECT_EQ(HellaSwagPreprocess("  a [x] b [unclosed\n] c  "),
            "a b [unclosed\n] c");
}

TEST(TaskReaderTest, PiqaBoolQOpenBookQa) {
  absl::StatusOr<Task> piqa = ReadTaskFile(Data("piqa.jsonl"));
  ASSERT_TRUE(piqa.ok()) << piqa.status();
  EXPECT_EQ(piqa->items[1].requests[1].context,
            "Question: To keep warm in the snow,\nAnswer:");
  EXPECT_EQ(piqa->items[1].requests[1].continuation,
            " put on a warm coat and a hat.");
  EXPECT_EQ(piqa->items[1].label, 1);

  absl::StatusOr<Task> boolq = ReadTaskFile(Data("boolq.jsonl"));
  ASSERT_TRUE(boolq.ok()) << boolq.status();
  EXPECT_EQ(boolq->items[0].requests[0].context,
            "The dog found a big bone. The dog was very happy and wagged its "
            "tail.\nQuestion: was the dog happy?\nAnswer:");
  EXPECT_EQ(boolq->items[0].requests[0].continuation, " no");
  EXPECT_EQ(boolq->items[0].requests[1].continuation, " yes");
  EXPECT_EQ(boolq->items[0].label, 1);
  EXPECT_EQ(boolq->items[1].label, 0);  // "answer": false

  absl::StatusOr<Task> obqa = ReadTaskFile(Data("openbookqa.jsonl"));
  ASSERT_TRUE(obqa.ok()) << obqa.status();
  EXPECT_EQ(obqa->format, TaskFormat::kOpenBookQa);
  EXPECT_EQ(obqa->items[0].requests[0].context,
            "When it is dark at night, people use");
  EXPECT_EQ(obqa->items[1].label, 1);  // answerKey " B", lstripped
}

TEST(TaskReaderTest, WinoGrandePartialScoring) {
  absl::StatusOr<Task> t = ReadTaskFile(Data("winogrande.jsonl"));
  ASSERT_TRUE(t.ok()) << t.status();
  const TaskItem& a = t->items[0];
  ASSERT_EQ(a.requests.size(), 2u);
  EXPECT_EQ(a.requests[0].context, "The cat chased the mouse because the cat");
  EXPECT_EQ(a.requests[1].context,
            "The cat chased the mouse because the mouse");
  EXPECT_EQ(a.requests[0].continuation, " was hungry.");
  EXPECT_EQ(a.requests[1].continuation, " was hungry.");
  EXPECT_EQ(a.label, 0);
  EXPECT_EQ(t->items[1].label, 1);  // answer "2"
  // acc_norm lengths: the filled-in contexts (lm-eval's doc_to_choice).
  EXPECT_EQ(a.choice_lengths[0], 40);
}

TEST(TaskReaderTest, GenericLimitAndUtf8Lengths) {
  TempFile f(
      "{\"context\": \"A\", \"choices\": [\"x\", \"caf\xC3\xA9\"], "
      "\"label\": 1}\n\n"
      "{\"contexts\": [\"p q\", \"p r\"], \"continuation\": \"s\", "
      "\"label\": 0}\n"
      "{\"context\": \"B\", \"choices\": [\"y\", \"z\"], \"label\": 0}\n");
  absl::StatusOr<Task> t = ReadTaskFile(f.path(), TaskFormat::kGeneric, 2);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->items.size(), 2u);
  EXPECT_EQ(t->items[0].choice_lengths[1], 4);  // code points, not bytes
  EXPECT_EQ(t->items[1].requests[1].context, "p r");
  EXPECT_EQ(t->items[1].requests[1].continuation, " s");
  EXPECT_EQ(t->items[1].line, 3);
}

TEST(TaskReaderTest, ErrorsNameFileLineAndField) {
  struct Case {
    std::string content;
    TaskFormat format;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"label\": 2}\n",
       TaskFormat::kGeneric, ":1: field 'label': 2 is outside [0, 2)"},
      {"\n{\"context\": \"a\", \"choices\": [\"x\"], \"label\": 0}\n",
       TaskFormat::kGeneric, ":2: field 'choices': has 1 entries"},
      {"{\"context\": 3, \"choices\": [\"x\", \"y\"], \"label\": 0}\n",
       TaskFormat::kGeneric, ":1: field 'context': not a string"},
      {"not json\n", TaskFormat::kGeneric, ":1: not a JSON object"},
      {"{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], "
       "\"label\": [\"A\", \"B\"]}, \"answerKey\": \"E\"}\n",
       TaskFormat::kArc,
       ":1: field 'answerKey': 'E' is not one of the choice labels [A, B]"},
      {"{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", "
       "\"answer\": \"1\"}\n",
       TaskFormat::kWinoGrande, ":1: field 'sentence': has no '_' blank"},
      {"{\"sentence\": \"a _\", \"option1\": \"a\", \"option2\": \"b\", "
       "\"answer\": \"3\"}\n",
       TaskFormat::kWinoGrande, ":1: field 'answer': \"3\" is outside [1, 3)"},
      {"{\"activity_label\": \"a\", \"ctx_a\": \"b\", \"ctx_b\": \"c\", "
       "\"endings\": [\"d\", \"e\"]}\n",
       TaskFormat::kHellaSwag, ":1: field 'label': missing"},
      {"{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": "
       "\"x\"}\n",
       TaskFormat::kPiqa, ":1: field 'label': not an integer"},
      {"{\"passage\": \"p\", \"question\": \"q\"}\n", TaskFormat::kBoolQ,
       ":1: field 'label': missing"},
      {"{\"unknown\": 1}\n", TaskFormat::kAuto,
       ":1: cannot tell the task format"},
      {"\n\n", TaskFormat::kGeneric, "has no items"},
  };
  for (const Case& c : cases) {
    TempFile f(c.content);
    absl::StatusOr<Task> t = ReadTaskFile(f.path(), c.format);
    ASSERT_FALSE(t.ok()) << c.content;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(f.path()), std::string::npos)
        << t.status();
    EXPECT_NE(t.status().message().find(c.expected), std::string::npos)
        << t.status() << " (expected '" << c.expected << "')";
  }
  EXPECT_EQ(ReadTaskFile("/nonexistent/t.jsonl").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(ParseTaskFormat("mmlu").ok());
  for (const char* name : {"auto", "generic", "arc", "hellaswag", "piqa",
                           "winogrande", "boolq", "openbookqa"}) {
    absl::StatusOr<TaskFormat> f = ParseTaskFormat(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_EQ(TaskFormatName(*f), name);
  }
}

// Every scored target of `windows`: (position in S, context length).
struct Scored {
  int64_t position, context;
};
std::vector<Scored> ScoredPositions(const std::vector<Sequence>& windows,
                                    const std::vector<int32_t>& S) {
  std::vector<Scored> out;
  for (const Sequence& w : windows) {
    EXPECT_EQ(w.inputs.size(), w.targets.size());
    // Locate the window in S by its content (ids are distinct below).
    const auto it =
        std::search(S.begin(), S.end(), w.inputs.begin(), w.inputs.end());
    EXPECT_NE(it, S.end());
    const int64_t w0 = it - S.begin();
    for (size_t j = 0; j < w.targets.size(); ++j) {
      if (w.targets[j] < 0) continue;
      EXPECT_EQ(w.targets[j], S[w0 + j + 1]);
      out.push_back(
          {static_cast<int64_t>(w0 + j + 1), static_cast<int64_t>(j + 1)});
    }
  }
  return out;
}

TEST(RollingWindowsTest, LmEvalDisjointWindowsWithPrefix) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(100 + i);
  absl::StatusOr<std::vector<Sequence>> w =
      RollingWindows(ids, {.max_length = 4, .stride = 0, .prefix = 7});
  ASSERT_TRUE(w.ok()) << w.status();
  // lm-eval, max_seq_len 4, context_len 1: ([7,t0,t1,t2] -> t0..t3),
  // ([t2..t5] -> t4..t7 with context t2,t3), ([t5..t8] -> t8,t9).
  ASSERT_EQ(w->size(), 3u);
  EXPECT_EQ((*w)[0].inputs, (std::vector<int32_t>{7, 100, 101, 102}));
  EXPECT_EQ((*w)[1].inputs, (std::vector<int32_t>{103, 104, 105, 106}));
  EXPECT_EQ((*w)[1].targets, (std::vector<int32_t>{104, 105, 106, 107}));
  EXPECT_EQ((*w)[2].inputs, (std::vector<int32_t>{105, 106, 107, 108}));
  EXPECT_EQ((*w)[2].targets, (std::vector<int32_t>{-1, -1, 108, 109}));
}

TEST(RollingWindowsTest, EveryTokenScoredOnceWithBoundedContext) {
  for (bool prefix : {true, false}) {
    for (int64_t n : {1, 2, 5, 17, 64}) {
      for (int64_t W : {1, 3, 8, 16}) {
        for (int64_t stride : {int64_t{1}, W / 2 + 1, W}) {
          std::vector<int32_t> ids;
          for (int64_t i = 0; i < n; ++i) ids.push_back(1000 + i);
          std::vector<int32_t> S = ids;
          if (prefix) S.insert(S.begin(), 7);
          RollingOptions o{.max_length = W, .stride = stride};
          if (prefix) o.prefix = 7;
          absl::StatusOr<std::vector<Sequence>> w = RollingWindows(ids, o);
          ASSERT_TRUE(w.ok()) << w.status();
          std::vector<Scored> s = ScoredPositions(*w, S);
          ASSERT_EQ(static_cast<int64_t>(s.size()),
                    static_cast<int64_t>(S.size()) - 1)
              << prefix << " n=" << n << " W=" << W << " s=" << stride;
          for (size_t i = 0; i < s.size(); ++i) {
            EXPECT_EQ(s[i].position, static_cast<int64_t>(i) + 1);
            EXPECT_LE(s[i].context, W);
            // Overlap: a stride below W keeps at least W - stride + 1
            // tokens of context once the document is long enough (for the
            // transformers grid, every window but the last).
            if (prefix && s[i].position > W) {
              EXPECT_GE(s[i].context, W - stride + 1);
            }
          }
          for (const Sequence& x : *w) {
            EXPECT_LE(static_cast<int64_t>(x.inputs.size()), W);
          }
        }
      }
    }
  }
  EXPECT_FALSE(RollingWindows({1, 2}, {.max_length = 4, .stride = 5}).ok());
  EXPECT_FALSE(RollingWindows({1, 2}, {.max_length = 0}).ok());
}

TEST(RollingWindowsTest, TransformersStrideGrid) {
  std::vector<int32_t> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(100 + i);
  // transformers with max_length 5 (W = 4 inputs), stride 2: windows begin
  // at 0, 2, 4, 6; the last reads t6..t8 and scores t9 only.
  absl::StatusOr<std::vector<Sequence>> w =
      RollingWindows(ids, {.max_length = 4, .stride = 2});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 4u);
  EXPECT_EQ((*w)[0].targets, (std::vector<int32_t>{101, 102, 103, 104}));
  EXPECT_EQ((*w)[1].inputs, (std::vector<int32_t>{102, 103, 104, 105}));
  EXPECT_EQ((*w)[1].targets, (std::vector<int32_t>{-1, -1, 105, 106}));
  EXPECT_EQ((*w)[3].inputs, (std::vector<int32_t>{106, 107, 108}));
  EXPECT_EQ((*w)[3].targets, (std::vector<int32_t>{-1, -1, 109}));
}

TEST(WikiTextTest, WordsPagesDetokenizer) {
  // len(re.split(r"\s+", s)).
  EXPECT_EQ(CountWords(""), 1);
  EXPECT_EQ(CountWords("a b"), 2);
  EXPECT_EQ(CountWords(" a  b\n"), 4);
  const std::string raw =
      " \n = Alpha = \n \n Text @-@ one , here . \n \n = = Sub = = \n"
      " More ( x ) \" q \" \n = Beta = \n Two \n";
  const std::vector<std::string> pages = SplitWikiTextPages(raw);
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[0].substr(0, 12), " = Alpha = \n");
  EXPECT_NE(pages[0].find(" = = Sub = = "), std::string::npos);
  EXPECT_EQ(pages[1], " = Beta = \n Two \n");
  EXPECT_EQ(WikiTextDetokenize(" Text @-@ one , here . \n = = Sub = = \n"),
            " Text-one, here.\n== Sub ==\n");
  EXPECT_EQ(WikiTextDetokenize("( x ) \" q \" [ a ] 's N 1 @,@ 000 @.@ 5"),
            "(x) \"q\" [a]'s 1 1,000.5");
  EXPECT_EQ(WikiTextDetokenize("5 \xC2\xB0 C the dogs ' bones"),
            "5\xC2\xB0"
            "C the dogs' bones");
}

TEST(MetricsTest, AccuracyStderrAndTies) {
  // mean 0.75, sample variance 0.75 / 3, stderr sqrt(0.25) / sqrt(4).
  EXPECT_DOUBLE_EQ(MeanStderr({1, 0, 1, 1}), 0.25);
  EXPECT_EQ(MeanStderr({1}), 0);
  std::vector<EncodedItem> items(2);
  items[0].choice_lengths = {1, 10};
  items[0].label = 1;
  items[1].choice_lengths = {2, 2};
  items[1].label = 0;
  TaskResult r;
  r.scores.resize(2);
  r.scores[0].loglikelihoods = {-2, -5};  // acc: 0, acc_norm: -2 vs -0.5 -> 1
  r.scores[1].loglikelihoods = {-3, -3};  // tie -> first choice (label)
  Aggregate(items, &r);
  EXPECT_EQ(r.items, 2);
  EXPECT_DOUBLE_EQ(r.acc, 0.5);
  EXPECT_DOUBLE_EQ(r.acc_norm, 1.0);
  EXPECT_DOUBLE_EQ(r.acc_stderr, 0.5);
  EXPECT_DOUBLE_EQ(r.acc_norm_stderr, 0.0);
}

}  // namespace
}  // namespace care::eval
