#include "care/engine/logits.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "care/engine/attention_block.h"
#include "care/engine/parallel.h"
#include "care/engine/rms_norm.h"
#include "care/engine/row_loader.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

using internal::kParallelMin;

namespace {

// Final norm of the selected rows: [rows, D].
absl::StatusOr<MatrixRM> NormRows(const ModelConfig& c, const TensorSource& w,
                                  const MatrixRM& hidden) {
  CARE_ASSIGN_OR_RETURN(
      Eigen::RowVectorXf norm,
      LoadNormWeight(w, io::names::FinalNorm(), c.hidden_size));
  MatrixRM x;
  RmsNorm(hidden, norm, c.rms_norm_eps, &x);
  return x;
}

// Rows [begin, end) of lm_head (or the tied embedding): [end - begin, D].
absl::StatusOr<MatrixRM> LoadHeadRows(const ModelConfig& c,
                                      const TensorSource& w, int64_t begin,
                                      int64_t end) {
  return LoadRows(w, LmHeadTensorName(c), c.vocab_size, c.hidden_size, begin,
                  end);
}

}  // namespace

std::string LmHeadTensorName(const ModelConfig& config) {
  return config.tie_word_embeddings ? io::names::Embed() : io::names::LmHead();
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

  // Vocabulary chunks of C entries, each read once; rows in blocks of R so
  // that one logits block stays within the element budget.
  const int64_t budget = std::max<int64_t>(block_elements, 1 << 16);
  const int64_t C = std::min(V, std::max<int64_t>(256, budget / S));
  const int64_t R = std::max<int64_t>(1, std::min(S, budget / C));
  MatrixRM logits;
  std::vector<float> run_max(S, -INFINITY);
  std::vector<double> run_sum(S, 0.0), target_logit(S, 0.0);
  for (int64_t v0 = 0; v0 < V; v0 += C) {
    const int64_t nv = std::min(C, V - v0);
    CARE_ASSIGN_OR_RETURN(MatrixRM w, LoadHeadRows(c, weights, v0, v0 + nv));
    for (int64_t r0 = 0; r0 < S; r0 += R) {
      const int64_t nr = std::min(R, S - r0);
      logits.resize(nr, nv);
      logits.noalias() = x.middleRows(r0, nr) * w.transpose();  // [nr, nv]
#pragma omp parallel for schedule(static) if (nr * nv >= kParallelMin)
      for (int64_t i = 0; i < nr; ++i) {
        const float* l = logits.data() + i * nv;
        const int64_t s = r0 + i;
        const Eigen::Map<const Eigen::ArrayXf> row(l, nv);
        const float m = std::max(run_max[s], row.maxCoeff());
        // exp in float (vectorized, relative error ~1e-7), summed in double.
        const Eigen::ArrayXf e = (row - m).exp();
        double sum = 0.0;
        for (int64_t j = 0; j < nv; ++j) sum += e[j];
        run_sum[s] = run_sum[s] * std::exp(double{run_max[s]} - m) + sum;
        run_max[s] = m;
        const int32_t tgt = targets[rows[s]];
        if (tgt >= v0 && tgt < v0 + nv) target_logit[s] = l[tgt - v0];
      }
    }
  }
  ReleaseMappedPages(weights, LmHeadTensorName(c));
  ReleaseMappedPages(weights, io::names::FinalNorm());
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
  CARE_ASSIGN_OR_RETURN(MatrixRM head,
                        LoadHeadRows(c, weights, 0, c.vocab_size));
  MatrixRM logits(x.rows(), c.vocab_size);
  logits.noalias() = x * head.transpose();  // [tokens, V]
  return logits;
}

}  // namespace care::engine
