// CpuBackend's chunked log-softmax scoring: a running max (fp32), sum of
// exponentials (fp64) and target logit per scored row.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/cpu_backend.h"

namespace care::compute::cpu {

namespace {

struct HostScoreState {
  std::vector<int32_t> targets;
  std::vector<float> run_max;
  std::vector<double> run_sum, target_logit;
};

}  // namespace

absl::StatusOr<ScoreState> CpuBackend::ScoreBegin(
    const std::vector<int32_t>& targets) {
  auto s = std::make_shared<HostScoreState>();
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ScoreBegin: target ", targets[i], " at row ", i, " is negative"));
    }
  }
  s->targets = targets;
  s->run_max.assign(targets.size(), -INFINITY);
  s->run_sum.assign(targets.size(), 0.0);
  s->target_logit.assign(targets.size(), 0.0);
  ScoreState state;
  state.rows = targets.size();
  state.storage = std::move(s);
  return state;
}

absl::Status CpuBackend::ScoreChunk(const Matrix& logits, int64_t row0,
                                    int64_t v0, ScoreState* state) {
  auto* s = static_cast<HostScoreState*>(state->storage.get());
  const int64_t nr = logits.rows, nv = logits.cols;
  if (s == nullptr || row0 < 0 || row0 + nr > state->rows || v0 < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreChunk: rows [", row0, ", ", row0 + nr, ") outside the state's ",
        state->rows, " rows (or vocabulary offset ", v0, " < 0)"));
  }
#pragma omp parallel for schedule(static) if (nr * nv >= kParallelMin)
  for (int64_t i = 0; i < nr; ++i) {
    const float* l = logits.data + i * nv;
    const int64_t r = row0 + i;
    const Eigen::Map<const Eigen::ArrayXf> row(l, nv);
    const float m = std::max(s->run_max[r], row.maxCoeff());
    // exp in float (Eigen's packet exp, relative error ~1e-7) into a small
    // buffer, summed in float within a block and in double across blocks.
    // A fused `exp().cast<double>().sum()` does not vectorize: it called
    // libm's scalar expf per logit (8 % of the evaluation's cycles).
    constexpr int64_t kBlock = 256;
    alignas(64) float block[kBlock];
    double sum = 0.0;
    for (int64_t j = 0; j < nv; j += kBlock) {
      const int64_t n = std::min(kBlock, nv - j);
      Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64> e(block, n);
      e = (row.segment(j, n) - m).exp();
      sum += e.sum();
    }
    s->run_sum[r] = s->run_sum[r] * std::exp(double{s->run_max[r]} - m) + sum;
    s->run_max[r] = m;
    const int32_t tgt = s->targets[r];
    if (tgt >= v0 && tgt < v0 + nv) s->target_logit[r] = l[tgt - v0];
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> CpuBackend::ScoreFinish(
    const ScoreState& state) {
  const auto* s = static_cast<const HostScoreState*>(state.storage.get());
  if (s == nullptr) {
    return absl::InvalidArgumentError("ScoreFinish: state was not begun");
  }
  std::vector<double> nll(state.rows);
  for (int64_t r = 0; r < state.rows; ++r) {
    nll[r] = s->run_max[r] + std::log(s->run_sum[r]) - s->target_logit[r];
  }
  return nll;
}

}  // namespace care::compute::cpu
