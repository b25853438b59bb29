#include "care/eval/rolling.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace care::eval {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

std::string Replace(absl::string_view s, absl::string_view from,
                    absl::string_view to) {
  return absl::StrReplaceAll(s, {{from, to}});
}

// re.sub(r"O\s*([^C]*?)\s*C", r"O\1C", s): each O with a later C (the first
// one) has the whitespace inside both ends removed; scanning resumes after C.
std::string TightenBrackets(absl::string_view s, char open, char close) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == open) {
      const size_t j = s.find(close, i + 1);
      if (j != absl::string_view::npos) {
        size_t a = i + 1, b = j;
        while (a < b && IsSpace(s[a])) ++a;
        while (b > a && IsSpace(s[b - 1])) --b;
        out.push_back(open);
        out.append(s.data() + a, b - a);
        out.push_back(close);
        i = j + 1;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Sequence>> RollingWindows(
    const std::vector<int32_t>& ids, const RollingOptions& o) {
  const int64_t W = o.max_length;
  const int64_t stride = o.stride == 0 ? W : o.stride;
  if (W < 1 || stride < 1 || stride > W) {
    return absl::InvalidArgumentError(
        absl::StrCat("rolling windows: max_length ", W, " must be >= 1 and ",
                     "stride ", stride, " in [1, max_length]"));
  }
  std::vector<int32_t> S;
  S.reserve(ids.size() + 1);
  if (o.prefix.has_value()) S.push_back(*o.prefix);
  for (int32_t id : ids) S.push_back(id);
  const int64_t N = static_cast<int64_t>(S.size());
  std::vector<Sequence> out;
  if (N < 2) return out;
  // Appends the window reading S[w0, b-1) and scoring positions [e, b).
  auto add = [&](int64_t w0, int64_t e, int64_t b) {
    Sequence s;
    s.inputs.assign(S.begin() + w0, S.begin() + (b - 1));
    s.targets.assign(s.inputs.size(), -1);
    for (int64_t p = e; p < b; ++p) s.targets[p - 1 - w0] = S[p];
    out.push_back(std::move(s));
  };
  if (!o.prefix.has_value()) {
    // transformers: windows begin on the stride grid; the last one too.
    int64_t prev_end = 1;
    for (int64_t begin = 0;; begin += stride) {
      const int64_t end = std::min(begin + W + 1, N);
      add(begin, prev_end, end);
      prev_end = end;
      if (end == N) break;
    }
    return out;
  }
  // lm-eval: scored positions [e, b); the window reads S[b-1-W .. b-2].
  int64_t e = 1;
  while (e < N) {
    const int64_t b = e == 1 ? std::min(W, N - 1) + 1 : std::min(e + stride, N);
    add(std::max<int64_t>(0, b - 1 - W), e, b);
    e = b;
  }
  return out;
}

absl::StatusOr<RollingResult> EvaluateRolling(
    const ModelConfig& config, const TensorSource& weights,
    const std::vector<RollingDocument>& documents,
    const RollingOptions& rolling, const SequenceOptions& options) {
  std::vector<Sequence> windows;
  RollingResult r;
  for (const RollingDocument& d : documents) {
    CARE_ASSIGN_OR_RETURN(std::vector<Sequence> w,
                          RollingWindows(d.ids, rolling));
    for (Sequence& s : w) windows.push_back(std::move(s));
    r.words += d.words;
    r.bytes += d.bytes;
  }
  r.documents = static_cast<int64_t>(documents.size());
  r.windows = static_cast<int64_t>(windows.size());
  if (windows.empty()) {
    return absl::InvalidArgumentError(
        "rolling perplexity: no token to score (documents empty)");
  }
  CARE_ASSIGN_OR_RETURN(std::vector<engine::NllSum> nll,
                        ScoreSequences(config, weights, windows, options));
  double nll_sum = 0;
  for (const engine::NllSum& n : nll) {
    nll_sum += n.sum;
    r.predictions += n.count;
  }
  r.loglikelihood = -nll_sum;
  r.mean_nll = nll_sum / static_cast<double>(r.predictions);
  r.token_perplexity = std::exp(r.mean_nll);
  if (r.words > 0) r.word_perplexity = std::exp(nll_sum / r.words);
  if (r.bytes > 0) {
    r.byte_perplexity = std::exp(nll_sum / r.bytes);
    r.bits_per_byte = nll_sum / r.bytes / std::log(2.0);
  }
  return r;
}

int64_t CountWords(absl::string_view text) {
  int64_t pieces = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    if (IsSpace(text[i]) && (i == 0 || !IsSpace(text[i - 1]))) ++pieces;
  }
  return pieces;
}

std::vector<std::string> SplitWikiTextPages(absl::string_view raw) {
  std::vector<std::string> pages;
  std::vector<absl::string_view> lines;
  auto flush = [&](bool keep_empty) {
    std::string page = absl::StrJoin(lines, "\n");
    if (keep_empty || !absl::StripAsciiWhitespace(page).empty()) {
      pages.push_back(std::move(page));
    }
    lines.clear();
  };
  for (absl::string_view line : absl::StrSplit(raw, '\n')) {
    const std::string r(absl::StripAsciiWhitespace(
        Replace(Replace(line, "= = =", "==="), "= =", "==")));
    if (absl::StartsWith(r, "= ") && absl::EndsWith(r, " =")) flush(false);
    lines.push_back(line);
  }
  flush(true);
  return pages;
}

std::string WikiTextDetokenize(absl::string_view page) {
  std::string s = Replace(page, "s '", "s'");
  // re.sub(r"/' [0-9]/", r"/'[0-9]/"): the replacement is literal.
  {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      if (i + 5 <= s.size() && s.compare(i, 3, "/' ") == 0 &&
          absl::ascii_isdigit(s[i + 3]) && s[i + 4] == '/') {
        out += "/'[0-9]/";
        i += 5;
      } else {
        out.push_back(s[i++]);
      }
    }
    s = std::move(out);
  }
  for (auto [from, to] : {std::pair<const char*, const char*>{" @-@ ", "-"},
                          {" @,@ ", ","},
                          {" @.@ ", "."},
                          {" : ", ": "},
                          {" ; ", "; "},
                          {" . ", ". "},
                          {" ! ", "! "},
                          {" ? ", "? "},
                          {" , ", ", "}}) {
    s = Replace(s, from, to);
  }
  for (auto [open, close] : {std::pair<char, char>{'(', ')'},
                             {'[', ']'},
                             {'{', '}'},
                             {'"', '"'},
                             {'\'', '\''}}) {
    s = TightenBrackets(s, open, close);
  }
  for (auto [from, to] :
       {std::pair<const char*, const char*>{"= = = =", "===="},
        {"= = =", "==="},
        {"= =", "=="},
        {" \xC2\xB0 ", "\xC2\xB0"},  // chr(176), the degree sign
        {" \n", "\n"},
        {"\n ", "\n"},
        {" N ", " 1 "},
        {" 's", "'s"}}) {
    s = Replace(s, from, to);
  }
  return s;
}

}  // namespace care::eval
