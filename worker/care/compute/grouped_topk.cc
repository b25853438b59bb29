// The DeepSeek-V3 routing rule (backend.h, GroupedTopK) on the host, shared
// by every backend, and the argument checks of CopyColumns.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/compute/backend.h"
#include "care/compute/train_checks.h"

namespace care::compute {

absl::Status CheckColumnBlocks(const Matrix& src, const ColumnBlocks& b,
                               const Matrix& dst) {
  return CheckColumnBlocksFit("CopyColumns", src, b, dst,
                              b.groups <= 1 || b.dst_stride >= b.width,
                              "destination blocks may not overlap");
}

absl::StatusOr<Routing> GroupedTopKOnHost(const float* logits, int64_t T,
                                          int64_t E, const float* bias,
                                          const GroupedTopK& r) {
  const int64_t G = r.groups;
  if (G < 1 || E % G != 0 || E / G < 2 || r.topk_groups < 1 ||
      r.topk_groups > G || r.k < 1 || r.k > E) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RouteGroupedTopK: ", E, " experts in ", G, " groups (of >= 2), ",
        r.topk_groups, " groups kept, k = ", r.k, " do not fit"));
  }
  const int64_t per = E / G, k = r.k;
  Routing out;
  out.tokens = T;
  out.k = k;
  out.experts.resize(T * k);
  out.weights.resize(T * k);
  std::vector<double> score(E), choice(E), group_score(G);
  std::vector<int64_t> order(E), groups(G);
  for (int64_t t = 0; t < T; ++t) {
    const float* row = logits + t * E;
    for (int64_t e = 0; e < E; ++e) {
      score[e] = 1.0 / (1.0 + std::exp(-double{row[e]}));
      choice[e] = score[e] + bias[e];
    }
    for (int64_t g = 0; g < G; ++g) {
      double a = -INFINITY, b = -INFINITY;  // the group's two best
      for (int64_t e = g * per; e < (g + 1) * per; ++e) {
        if (choice[e] > a) {
          b = a;
          a = choice[e];
        } else if (choice[e] > b) {
          b = choice[e];
        }
      }
      group_score[g] = a + b;
    }
    std::iota(groups.begin(), groups.end(), 0);
    std::partial_sort(groups.begin(), groups.begin() + r.topk_groups,
                      groups.end(), [&](int64_t a, int64_t b) {
                        return group_score[a] != group_score[b]
                                   ? group_score[a] > group_score[b]
                                   : a < b;
                      });
    std::vector<bool> kept(G, false);
    for (int64_t i = 0; i < r.topk_groups; ++i) kept[groups[i]] = true;
    for (int64_t e = 0; e < E; ++e) {
      if (!kept[e / per]) choice[e] = 0.0;
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) {
                        return choice[a] != choice[b] ? choice[a] > choice[b]
                                                      : a < b;
                      });
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) sum += score[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[j];
      double w = score[e];
      if (r.renormalize) w /= sum + 1e-20;
      out.experts[t * k + j] = static_cast<int32_t>(e);
      out.weights[t * k + j] = static_cast<float>(w * r.scale);
    }
  }
  return out;
}

}  // namespace care::compute
