// care/eval against an independent implementation: reference_eval.py, a
// float64 numpy Llama forward of the same safetensors, with its own request
// truncation, lm-eval / transformers windowing and acc/acc_norm/stderr. The
// test gives it the token ids (so the tokenizer is not in question) and the
// C++ results must match:
//   - per-request log-likelihoods within 1e-3 nats: the C++ engine runs in
//     float32 and matches float64 logits to ~1.1e-5 per position
//     (engine_fixture_test); a continuation has at most ~40 tokens, so its
//     sum can drift by ~4e-4 at worst;
//   - acc / acc_norm and their stderrs exactly, the predicted choice of
//     every item whose best two scores are more than 2e-3 apart (closer
//     pairs could flip on float32 noise; the test counts them and needs
//     none);
//   - rolling: the same window and token counts, mean NLL within 2e-5 nats
//     (per-token errors of ~1e-5 do not add up in the mean), word/byte
//     perplexity and bits per byte to 1e-4 relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "care/engine/families.h"
#include "care/eval/documents.h"
#include "care/eval/multiple_choice.h"
#include "care/eval/rolling.h"
#include "care/eval/task.h"
#include "care/io/model.h"
#include "care/tokenizer/tokenizer.h"
#include "support/fixtures.h"

namespace care::eval {
namespace {

using nlohmann::json;

std::string Data(const std::string& name) {
  return std::string(CARE_EVAL_TESTDATA) + "/" + name;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// Runs reference_eval.py on `spec`; its JSON output.
json RunReference(const json& spec, const std::string& dir) {
  const std::string path = dir + "/spec.json";
  std::ofstream(path) << spec.dump();
  const std::string cmd =
      std::string("/usr/bin/python3 ") + CARE_EVAL_REFERENCE + " " + path;
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return json();
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  return json::parse(out, nullptr, /*allow_exceptions=*/false);
}

class ReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = ::care::testing::MakeTempDir("eval_reference");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

SequenceOptions Options() {
  SequenceOptions o;
  o.engine.device = ::care::testing::TestDevice();
  o.engine.threads = 1;      // tiny models: one thread is fastest
  o.tokens_per_pass = 2048;  // several passes, mixed lengths per pass
  return o;
}

TEST_P(ReferenceTest, MultipleChoiceMatchesNumpyLlama) {
  CARE_REQUIRE_FIXTURES();
  const std::string model_dir = ::care::testing::FixturePath(GetParam());
  absl::StatusOr<io::Model> model =
      io::OpenModel(model_dir, engine::Families());
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> tokenizer =
      tok::LoadTokenizer(model_dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // Every reader's layout, and a short max_length so that long requests
  // are truncated from the left on both sides.
  struct Case {
    std::string file;
    int64_t limit, max_length;
    bool bos;
  };
  const std::vector<Case> cases = {
      {"stories_next_sentence.jsonl", 16, 0, false},
      {"stories_next_sentence.jsonl", 8, 48, true},
      {"stories_which_context.jsonl", 12, 0, false},
      {"arc.jsonl", 0, 0, false},
      {"hellaswag.jsonl", 0, 0, false},
      {"piqa.jsonl", 0, 0, true},
      {"winogrande.jsonl", 0, 0, false},
      {"boolq.jsonl", 0, 0, false},
      {"openbookqa.jsonl", 0, 0, false},
  };
  std::vector<TaskResult> results;
  json specs = json::array();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    absl::StatusOr<Task> task =
        ReadTaskFile(Data(c.file), TaskFormat::kAuto, c.limit);
    ASSERT_TRUE(task.ok()) << task.status();
    absl::StatusOr<EncodedTask> enc = EncodeTask(
        *task, **tokenizer, {.prepend_bos = c.bos, .bos_id = std::nullopt});
    ASSERT_TRUE(enc.ok()) << enc.status();
    absl::StatusOr<TaskResult> r = ScoreTask(model->config, *model->weights,
                                             *enc, Options(), c.max_length);
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*r);
    json items = json::array();
    for (const EncodedItem& item : enc->items) {
      json reqs = json::array();
      for (const EncodedRequest& q : item.requests) {
        reqs.push_back(
            {{"context", q.context}, {"continuation", q.continuation}});
      }
      items.push_back({{"requests", reqs},
                       {"choice_lengths", item.choice_lengths},
                       {"label", item.label}});
    }
    const int64_t max_length =
        c.max_length > 0 ? c.max_length : model->config.max_position_embeddings;
    specs.push_back({{"max_length", max_length}, {"items", items}});
  }
  // One run of the reference for all cases (one model load).
  const json ref = RunReference({{"model", model_dir}, {"mc", specs}}, dir_);
  ASSERT_TRUE(ref.contains("mc") && ref["mc"].size() == cases.size())
      << ref.dump();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    SCOPED_TRACE(cases[ci].file);
    const TaskResult* r = &results[ci];
    const json& mc = ref["mc"][ci];
    int near_ties = 0;
    for (size_t i = 0; i < r->scores.size(); ++i) {
      const std::vector<double> lls =
          mc["loglikelihoods"][i].get<std::vector<double>>();
      ASSERT_EQ(lls.size(), r->scores[i].loglikelihoods.size());
      std::vector<double> sorted = lls;
      std::sort(sorted.rbegin(), sorted.rend());
      near_ties += sorted[0] - sorted[1] < 2e-3;
      for (size_t k = 0; k < lls.size(); ++k) {
        EXPECT_NEAR(r->scores[i].loglikelihoods[k], lls[k], 1e-3)
            << "item " << i << " choice " << k;
      }
    }
    EXPECT_EQ(near_ties, 0);
    EXPECT_DOUBLE_EQ(r->acc, mc["acc"].get<double>());
    EXPECT_DOUBLE_EQ(r->acc_norm, mc["acc_norm"].get<double>());
    EXPECT_NEAR(r->acc_stderr, mc["acc_stderr"].get<double>(), 1e-12);
    EXPECT_NEAR(r->acc_norm_stderr, mc["acc_norm_stderr"].get<double>(), 1e-12);
  }
}

TEST_P(ReferenceTest, RollingPerplexityMatchesNumpyLlama) {
  CARE_REQUIRE_FIXTURES();
  const std::string model_dir = ::care::testing::FixturePath(GetParam());
  absl::StatusOr<io::Model> model =
      io::OpenModel(model_dir, engine::Families());
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<tok::Tokenizer>> tokenizer =
      tok::LoadTokenizer(model_dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // Two TinyStories paragraphs and the first WikiText-2 test pages (a 6 KB
  // slice: the protocol, not the model, is under test here).
  const std::string stories = ReadAll(
      ::care::testing::FixturePath("tinystories/tinystories_val_head.txt"));
  const std::string wiki =
      ReadAll(::care::testing::FixturePath("wikitext2/wiki.test.raw"));
  absl::StatusOr<std::vector<RollingDocument>> story_docs =
      MakeRollingDocuments({stories.substr(0, 900), stories.substr(900, 700)},
                           **tokenizer, DocumentSplit::kWhole);
  ASSERT_TRUE(story_docs.ok()) << story_docs.status();
  absl::StatusOr<std::vector<RollingDocument>> wiki_docs = MakeRollingDocuments(
      {wiki.substr(0, 6000)}, **tokenizer, DocumentSplit::kWikiText);
  ASSERT_TRUE(wiki_docs.ok()) << wiki_docs.status();
  ASSERT_GE(wiki_docs->size(), 1u);

  struct Case {
    const std::vector<RollingDocument>* docs;
    RollingOptions options;
  };
  const int32_t bos = 1;
  const std::vector<Case> cases = {
      {&*story_docs, {.max_length = 64, .stride = 0, .prefix = bos}},
      {&*story_docs, {.max_length = 64, .stride = 24, .prefix = bos}},
      {&*story_docs, {.max_length = 64, .stride = 16}},
      {&*wiki_docs, {.max_length = 128, .stride = 0, .prefix = bos}},
      {&*wiki_docs, {.max_length = 96, .stride = 40}},
  };
  std::vector<RollingResult> results;
  json specs = json::array();
  for (const Case& c : cases) {
    absl::StatusOr<RollingResult> r = EvaluateRolling(
        model->config, *model->weights, *c.docs, c.options, Options());
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*r);
    json docs = json::array();
    for (const RollingDocument& d : *c.docs) docs.push_back(d.ids);
    specs.push_back(
        {{"max_length", c.options.max_length},
         {"stride",
          c.options.stride > 0 ? c.options.stride : c.options.max_length},
         {"prefix", c.options.prefix.has_value() ? json(*c.options.prefix)
                                                 : json(nullptr)},
         {"documents", docs},
         {"words", r->words},
         {"bytes", r->bytes}});
  }
  const json ref =
      RunReference({{"model", model_dir}, {"rolling", specs}}, dir_);
  ASSERT_TRUE(ref.contains("rolling") && ref["rolling"].size() == cases.size())
      << ref.dump();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    SCOPED_TRACE(::testing::Message()
                 << "W=" << c.options.max_length << " s=" << c.options.stride
                 << " prefix=" << c.options.prefix.has_value());
    const RollingResult* r = &results[ci];
    const json& x = ref["rolling"][ci];
    EXPECT_EQ(r->windows, x["windows"].get<int64_t>());
    EXPECT_EQ(r->predictions, x["predictions"].get<int64_t>());
    const double ref_mean =
        -x["loglikelihood"].get<double>() / x["predictions"].get<double>();
    EXPECT_NEAR(r->mean_nll, ref_mean, 2e-5);
    auto rel = [](double a, double b) { return std::abs(a - b) / b; };
    EXPECT_LT(rel(r->word_perplexity, x["word_perplexity"]), 1e-4);
    EXPECT_LT(rel(r->byte_perplexity, x["byte_perplexity"]), 1e-4);
    EXPECT_LT(rel(r->bits_per_byte, x["bits_per_byte"]), 1e-4);
    EXPECT_LT(rel(r->token_perplexity, x["token_perplexity"]), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceTest,
                         ::testing::Values("stories260K-hf", "tinygqa-hf"),
                         [](const auto& info) {
                           return info.param == "tinygqa-hf"
                                      ? std::string("tinygqa")
                                      : std::string("stories260K");
                         });

}  // namespace
}  // namespace care::eval
