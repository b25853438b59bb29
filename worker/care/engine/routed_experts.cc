#include "care/engine/routed_experts.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/mlp.h"
#include "care/io/tensor_names.h"

namespace care::engine {
namespace {

struct Route {
  std::vector<int64_t> tokens;  // token rows routed to the expert
  std::vector<int64_t> slots;   // their rows t*k + j of the combined output
  std::vector<float> weights;   // routing weights
};

// Per expert, its tokens; token t's j-th expert in ascending expert order
// writes slot t*k + j, so SumRowGroups adds a token's experts in expert
// order whatever the schedule.
std::vector<Route> Routes(const compute::Routing& r, int64_t E) {
  std::vector<Route> routes(E);
  std::vector<std::pair<int32_t, float>> mine;
  for (int64_t t = 0; t < r.tokens; ++t) {
    mine.clear();
    for (int64_t j = 0; j < r.k; ++j) {
      mine.emplace_back(r.experts[t * r.k + j], r.weights[t * r.k + j]);
    }
    std::sort(mine.begin(), mine.end());
    for (int64_t j = 0; j < r.k; ++j) {
      Route& route = routes[mine[j].first];
      route.tokens.push_back(t);
      route.slots.push_back(t * r.k + j);
      route.weights.push_back(mine[j].second);
    }
  }
  return routes;
}

}  // namespace

absl::Status RunRoutedExperts(compute::Backend& be, const TensorSource& weights,
                              int64_t layer, const compute::Matrix& x,
                              const compute::Routing& routing,
                              int64_t num_experts, int64_t I,
                              compute::Matrix* y) {
  const int64_t D = x.cols, k = routing.k;
  const std::vector<Route> routes = Routes(routing, num_experts);
  CARE_ASSIGN_OR_RETURN(compute::Matrix out, be.Allocate(x.rows * k, D));
  // One expert per task (cpu: per thread): the per-expert GEMMs are small
  // (tokens/E·k rows), where a GEMM split over threads spends most of its
  // time synchronizing; experts side by side keep every core on useful
  // work. Each expert writes its own slots of `out`.
  CARE_RETURN_IF_ERROR(be.ForEach(num_experts, [&](int64_t e) -> absl::Status {
    const Route& r = routes[e];
    if (r.tokens.empty()) return absl::OkStatus();
    CARE_ASSIGN_OR_RETURN(
        SwiGluWeights w,
        LoadSwiGlu(
            be, weights,
            io::names::Layer(layer, absl::StrCat("mlp.experts.", e, ".")), D, I,
            /*prefetch=*/nullptr));
    const int64_t n = r.tokens.size();
    CARE_ASSIGN_OR_RETURN(compute::Matrix xe, be.Allocate(n, D));
    CARE_ASSIGN_OR_RETURN(compute::Matrix ye, be.Allocate(n, D));
    CARE_RETURN_IF_ERROR(be.GatherRows(x, r.tokens, &xe));  // [routed, D]
    CARE_RETURN_IF_ERROR(SwiGlu(be, w, xe, &ye));           // [routed, D]
    return be.ScatterRows(ye, r.slots, r.weights, &out, false);
  }));
  return be.SumRowGroups(out, k, y);  // [T, D]
}

}  // namespace care::engine
