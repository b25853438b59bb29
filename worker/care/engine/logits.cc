#include "care/engine/logits.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "care/engine/attention_block.h"
#include "care/engine/rms_norm.h"
#include "care/engine/weight_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

namespace {

// Final norm of the selected rows: [rows, D].
absl::StatusOr<MatrixRM> NormRows(const ModelConfig& c, const TensorSource& w,
                                  const MatrixRM& hidden) {
  CARE_ASSIGN_OR_RETURN(
      Eigen::RowVectorXf norm,
      LoadNormWeight(w, std::string(kFinalNorm), c.hidden_size));
  MatrixRM x;
  RmsNorm(hidden, norm, c.rms_norm_eps, &x);
  return x;
}

absl::StatusOr<Tensor> LoadHead(const ModelConfig& c, const TensorSource& w) {
  return LoadChecked(w, LmHeadTensorName(c), {c.vocab_size, c.hidden_size});
}

}  // namespace

const char* LmHeadTensorName(const ModelConfig& config) {
  return config.tie_word_embeddings ? kEmbedTokens.data() : kLmHead.data();
}

absl::StatusOr<NllSum> ScoreHiddenStates(const ModelConfig& c,
                                         const TensorSource& weights,
                                         const MatrixRM& hidden,
                                         const std::vector<int32_t>& targets,
                                         int64_t block_elements) {
  if (static_cast<int64_t>(targets.size()) != hidden.rows()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "got ", targets.size(), " targets for ", hidden.rows(), " tokens"));
  }
  const int64_t V = c.vocab_size;
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < static_cast<int64_t>(targets.size()); ++t) {
    if (targets[t] < 0) continue;
    if (targets[t] >= V) {
      return absl::InvalidArgumentError(
          absl::StrCat("target id ", targets[t], " at token ", t,
                       " is outside [0, ", V, ")"));
    }
    rows.push_back(t);
  }
  NllSum total;
  if (rows.empty()) return total;
  const int64_t S = rows.size();
  MatrixRM selected(S, hidden.cols());  // [scored tokens, D]
  for (int64_t i = 0; i < S; ++i) selected.row(i) = hidden.row(rows[i]);
  CARE_ASSIGN_OR_RETURN(MatrixRM x, NormRows(c, weights, selected));
  selected.resize(0, 0);
  CARE_ASSIGN_OR_RETURN(Tensor head, LoadHead(c, weights));
  const auto w = head.matrix();  // [V, D]

  // Blocks of R rows × C vocabulary entries within the element budget.
  const int64_t budget = std::max<int64_t>(block_elements, 1 << 16);
  const int64_t C = std::min(V, std::max<int64_t>(1024, budget / S));
  const int64_t R = std::max<int64_t>(1, std::min(S, budget / C));
  MatrixRM logits;
  std::vector<float> run_max(S);
  std::vector<double> run_sum(S), target_logit(S);
  for (int64_t r0 = 0; r0 < S; r0 += R) {
    const int64_t nr = std::min(R, S - r0);
    std::fill(run_max.begin() + r0, run_max.begin() + r0 + nr, -INFINITY);
    std::fill(run_sum.begin() + r0, run_sum.begin() + r0 + nr, 0.0);
    for (int64_t v0 = 0; v0 < V; v0 += C) {
      const int64_t nv = std::min(C, V - v0);
      logits.resize(nr, nv);
      logits.noalias() =
          x.middleRows(r0, nr) * w.middleRows(v0, nv).transpose();  // [nr, nv]
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < nr; ++i) {
        const float* l = logits.data() + i * nv;
        const int64_t s = r0 + i;
        const float cm = *std::max_element(l, l + nv);
        const float m = std::max(run_max[s], cm);
        double sum = 0.0;
        for (int64_t j = 0; j < nv; ++j) sum += std::exp(double{l[j]} - m);
        run_sum[s] = run_sum[s] * std::exp(double{run_max[s]} - m) + sum;
        run_max[s] = m;
        const int32_t tgt = targets[rows[s]];
        if (tgt >= v0 && tgt < v0 + nv) target_logit[s] = l[tgt - v0];
      }
    }
  }
  for (int64_t s = 0; s < S; ++s) {
    total.sum += run_max[s] + std::log(run_sum[s]) - target_logit[s];
  }
  total.count = S;
  return total;
}

absl::StatusOr<MatrixRM> ComputeLogits(const ModelConfig& c,
                                       const TensorSource& weights,
                                       const MatrixRM& hidden) {
  CARE_ASSIGN_OR_RETURN(MatrixRM x, NormRows(c, weights, hidden));
  CARE_ASSIGN_OR_RETURN(Tensor head, LoadHead(c, weights));
  MatrixRM logits(x.rows(), c.vocab_size);
  logits.noalias() = x * head.matrix().transpose();  // [tokens, V]
  return logits;
}

}  // namespace care::engine
