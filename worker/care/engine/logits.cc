#include "care/engine/logits.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/row_loader.h"
#include "care/engine/weight_loader.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

// Final norm of the rows of `hidden`: [rows, D].
absl::StatusOr<compute::Matrix> NormRows(const ModelConfig& c,
                                         const TensorSource& w,
                                         compute::Backend& be,
                                         const compute::Matrix& hidden) {
  CARE_ASSIGN_OR_RETURN(
      compute::Matrix norm,
      LoadRowOn(be, w, io::names::FinalNorm(), c.hidden_size));
  CARE_ASSIGN_OR_RETURN(compute::Matrix x,
                        be.Allocate(hidden.rows, hidden.cols));
  CARE_RETURN_IF_ERROR(be.RmsNorm(hidden, norm, c.rms_norm_eps, &x));
  return x;
}

// Rows [begin, end) of lm_head (or the tied embedding): [end - begin, D].
absl::StatusOr<compute::Weight> LoadHeadRows(const ModelConfig& c,
                                             const TensorSource& w,
                                             compute::Backend& be,
                                             int64_t begin, int64_t end) {
  return LoadWeightRowsOn(be, w, LmHeadTensorName(c), c.vocab_size,
                          c.hidden_size, begin, end);
}

}  // namespace

std::string LmHeadTensorName(const ModelConfig& config) {
  return config.tie_word_embeddings ? io::names::Embed() : io::names::LmHead();
}

absl::StatusOr<std::vector<double>> ScoreHiddenStatesEach(
    const ModelConfig& c, const TensorSource& weights, compute::Backend& be,
    const compute::Matrix& hidden, const std::vector<int32_t>& targets,
    int64_t block_elements) {
  if (static_cast<int64_t>(targets.size()) != hidden.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "got ", targets.size(), " targets for ", hidden.rows, " tokens"));
  }
  const int64_t V = c.vocab_size;
  std::vector<int64_t> rows;
  std::vector<int32_t> scored;
  for (int64_t t = 0; t < static_cast<int64_t>(targets.size()); ++t) {
    if (targets[t] < 0) continue;
    if (targets[t] >= V) {
      return absl::InvalidArgumentError(
          absl::StrCat("target id ", targets[t], " at token ", t,
                       " is outside [0, ", V, ")"));
    }
    rows.push_back(t);
    scored.push_back(targets[t]);
  }
  std::vector<double> out(targets.size(), 0.0);
  if (rows.empty()) return out;
  const int64_t S = rows.size();
  compute::Matrix x;
  {
    CARE_ASSIGN_OR_RETURN(compute::Matrix selected,
                          be.Allocate(S, hidden.cols));  // [scored, D]
    CARE_RETURN_IF_ERROR(be.GatherRows(hidden, rows, &selected));
    CARE_ASSIGN_OR_RETURN(x, NormRows(c, weights, be, selected));
  }

  // Vocabulary chunks of C entries, each read once; rows in blocks of R so
  // that one logits block stays within the element budget.
  const int64_t budget = std::max<int64_t>(block_elements, 1 << 16);
  const int64_t C = std::min(V, std::max<int64_t>(256, budget / S));
  const int64_t R = std::max<int64_t>(1, std::min(S, budget / C));
  CARE_ASSIGN_OR_RETURN(compute::ScoreState state, be.ScoreBegin(scored));
  compute::Matrix logits;
  for (int64_t v0 = 0; v0 < V; v0 += C) {
    const int64_t nv = std::min(C, V - v0);
    CARE_ASSIGN_OR_RETURN(compute::Weight w,
                          LoadHeadRows(c, weights, be, v0, v0 + nv));
    for (int64_t r0 = 0; r0 < S; r0 += R) {
      const int64_t nr = std::min(R, S - r0);
      if (logits.rows != nr || logits.cols != nv) {
        CARE_ASSIGN_OR_RETURN(logits, be.Allocate(nr, nv));
      }
      CARE_RETURN_IF_ERROR(be.Linear(compute::RowsView(x, r0, nr), w, nullptr,
                                     &logits, false));  // [nr, nv]
      CARE_RETURN_IF_ERROR(be.ScoreChunk(logits, r0, v0, &state));
    }
  }
  CARE_ASSIGN_OR_RETURN(std::vector<double> nll, be.ScoreFinish(state));
  ReleaseMappedPages(weights, LmHeadTensorName(c));
  ReleaseMappedPages(weights, io::names::FinalNorm());
  for (int64_t i = 0; i < S; ++i) out[rows[i]] = nll[i];
  return out;
}

absl::StatusOr<NllSum> ScoreHiddenStates(const ModelConfig& c,
                                         const TensorSource& weights,
                                         compute::Backend& be,
                                         const compute::Matrix& hidden,
                                         const std::vector<int32_t>& targets,
                                         int64_t block_elements) {
  CARE_ASSIGN_OR_RETURN(
      std::vector<double> each,
      ScoreHiddenStatesEach(c, weights, be, hidden, targets, block_elements));
  NllSum total;
  for (size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] < 0) continue;
    total.sum += each[t];
    ++total.count;
  }
  return total;
}

absl::StatusOr<MatrixRM> ComputeLogits(const ModelConfig& c,
                                       const TensorSource& weights,
                                       compute::Backend& be,
                                       const compute::Matrix& hidden) {
  CARE_ASSIGN_OR_RETURN(compute::Matrix x, NormRows(c, weights, be, hidden));
  CARE_ASSIGN_OR_RETURN(compute::Weight head,
                        LoadHeadRows(c, weights, be, 0, c.vocab_size));
  CARE_ASSIGN_OR_RETURN(compute::Matrix logits,
                        be.Allocate(x.rows, c.vocab_size));
  CARE_RETURN_IF_ERROR(
      be.Linear(x, head, nullptr, &logits, false));  // [tokens, V]
  MatrixRM out(x.rows, c.vocab_size);
  CARE_RETURN_IF_ERROR(be.Download(logits, out.data()));
  return out;
}

}  // namespace care::engine
