// Rolling-window perplexity of whole documents (docs/engine.md "Rolling
// perplexity"): every token of a document is scored exactly once, each with
// as much preceding context as the window allows.
//
// A document of ids t_1..t_m becomes S (N tokens); positions 1..N-1 are
// scored. W = max_length (model inputs per window), stride s in [1, W].
//   With a prefix (lm-eval's loglikelihood_rolling, prefix = BOS):
//     S = [prefix] + t, so t_1 is scored given BOS alone. The first window
//     reads S[0, min(W, N-1)) and scores all its targets; then segments of s
//     positions, the window of a segment whose last position is p reading
//     the W inputs S[p-W .. p-1] (get_rolling_token_windows with
//     context_len = W - s + 1; s = W is lm-eval's own disjoint windows).
//   Without (transformers' "perplexity of fixed-length models"): S = t, t_1
//     is context only. Windows begin at 0, s, 2s, ...: window k reads
//     S[ks, min(ks + W + 1, N) - 1) and scores the positions after the
//     previous window's end, up to its own; it stops at the window that
//     reaches N (whose context may be shorter than W).
//
// lm-eval's wikitext metrics over the documents (LL = sum of log-likelihoods,
// words and bytes counted on the original document text):
//   word_perplexity = exp(-LL / words), words = len(re.split(r"\s+", doc))
//   byte_perplexity = exp(-LL / bytes), bytes = len(doc.encode("utf-8"))
//   bits_per_byte   = -LL / bytes / ln 2
// and token perplexity exp(-LL / scored tokens).
#ifndef CARE_EVAL_ROLLING_H_
#define CARE_EVAL_ROLLING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/eval/sequences.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::eval {

struct RollingOptions {
  int64_t max_length = 0;                        // W >= 1
  int64_t stride = 0;                            // 0 = W; else in [1, W]
  std::optional<int32_t> prefix = std::nullopt;  // BOS: lm-eval style
};

struct RollingDocument {
  std::vector<int32_t> ids;
  int64_t words = 0;
  int64_t bytes = 0;
};

// The windows of one document (see above); InvalidArgument on bad options.
absl::StatusOr<std::vector<Sequence>> RollingWindows(
    const std::vector<int32_t>& ids, const RollingOptions& options);

struct RollingResult {
  int64_t documents = 0;
  int64_t windows = 0;
  int64_t predictions = 0;  // scored tokens
  int64_t words = 0, bytes = 0;
  double loglikelihood = 0;  // sum over all scored tokens (nats, <= 0)
  double mean_nll = 0;
  double token_perplexity = 0;
  double word_perplexity = 0;
  double byte_perplexity = 0;
  double bits_per_byte = 0;
};

absl::StatusOr<RollingResult> EvaluateRolling(
    const ModelConfig& config, const TensorSource& weights,
    const std::vector<RollingDocument>& documents,
    const RollingOptions& rolling, const SequenceOptions& options);

// Words as lm-eval counts them: len(re.split(r"\s+", text)) (ASCII
// whitespace; a leading or trailing run adds an empty piece, as in Python).
int64_t CountWords(absl::string_view text);

// WikiText raw text split into articles the way lm-eval's wikitext task gets
// them (EleutherAI/wikitext_document_level): a new page starts at each line
// that, with "= = =" -> "===" and "= =" -> "==" and stripped, starts with
// "= " and ends with " ="; pages are the lines joined by "\n", empty pages
// skipped (the last one is always kept).
std::vector<std::string> SplitWikiTextPages(absl::string_view raw);

// lm-eval's wikitext_detokenizer (ASCII whitespace for "\s").
std::string WikiTextDetokenize(absl::string_view page);

}  // namespace care::eval

#endif  // CARE_EVAL_ROLLING_H_
