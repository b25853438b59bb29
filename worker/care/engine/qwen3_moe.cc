// Qwen3-MoE decoder layers: Qwen3 attention, and on the sparse layers a
// mixture of SwiGLU experts. The router (mlp.gate.weight [E, D]) gives a
// softmax over experts per token; the top k are kept (renormalized to sum 1
// when norm_topk_prob), and each expert runs only on the tokens routed to it,
// its weights loaded just for that (unused experts are never read). Layers
// in mlp_only_layers, or off the decoder_sparse_step grid, use a dense MLP.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/engine/attention_block.h"
#include "care/engine/decoder_family.h"
#include "care/engine/mlp.h"
#include "care/engine/parallel.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::engine {

using internal::kParallelMin;

namespace {

struct Route {
  std::vector<int64_t> tokens;
  std::vector<float> weights;
};

// Per expert, the tokens routed to it and their routing weights.
std::vector<Route> RouteTokens(const ModelConfig& c, const MatrixRM& logits) {
  const int64_t E = logits.cols(), k = c.num_experts_per_tok;
  std::vector<Route> routes(E);
  std::vector<int64_t> order(E);
  std::vector<double> p(E);
  for (int64_t t = 0; t < logits.rows(); ++t) {
    const float* row = logits.data() + t * E;
    const float mx = *std::max_element(row, row + E);
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(double{row[e]} - mx);
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    // Highest probability first; the lower expert index wins ties.
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) {
                        return p[a] != p[b] ? p[a] > p[b] : a < b;
                      });
    double kept = 0.0;
    for (int64_t j = 0; j < k; ++j) kept += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[j];
      routes[e].tokens.push_back(t);
      routes[e].weights.push_back(
          static_cast<float>(c.norm_topk_prob ? p[e] / kept : p[e]));
    }
  }
  return routes;
}

absl::Status SparseMoe(const LayerContext& ctx, int64_t layer,
                       const MatrixRM& x, MatrixRM* y) {
  const ModelConfig& c = ctx.config;
  const int64_t D = c.hidden_size, E = c.num_experts;
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > E) {
    return absl::InvalidArgumentError(absl::StrCat("num_experts_per_tok ",
                                                   c.num_experts_per_tok,
                                                   " is outside [1, ", E, "]"));
  }
  MatrixRM logits;
  {
    CARE_ASSIGN_OR_RETURN(
        Tensor gate,
        LoadChecked(ctx.weights, io::names::Router(layer), {E, D}));
    logits.noalias() = x * gate.matrix().transpose();  // [tokens, E]
  }
  const std::vector<Route> routes = RouteTokens(c, logits);
  const int64_t T = x.rows(), k = c.num_experts_per_tok;
  // Each (token, expert) product goes to its own row of `out`, token t's k
  // rows ordered by expert id; summing them in that order afterwards is the
  // sequential loop's sum (same order), whatever the thread count.
  std::vector<std::vector<int64_t>> slot(E);
  std::vector<int64_t> used(T, 0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t t : routes[e].tokens) slot[e].push_back(t * k + used[t]++);
  }
  MatrixRM out(T * k, D);  // [tokens · k, D]
  std::vector<absl::Status> status(E);
  // One expert per thread: the per-expert GEMMs are small (tokens/E·k rows),
  // where a GEMM split over threads spends most of its time synchronizing;
  // experts side by side keep every core on useful work. Unused experts are
  // never read.
#pragma omp parallel
  {
    MatrixRM xe, ye;
#pragma omp for schedule(dynamic, 1)
    for (int64_t e = 0; e < E; ++e) {
      const Route& r = routes[e];
      if (r.tokens.empty()) continue;
      absl::StatusOr<SwiGluWeights> w = LoadSwiGlu(
          ctx.weights,
          io::names::Layer(layer, absl::StrCat("mlp.experts.", e, ".")), D,
          c.moe_intermediate_size);
      if (!w.ok()) {
        status[e] = w.status();
        continue;
      }
      const int64_t n = r.tokens.size();
      xe.resize(n, D);  // [routed tokens, D]
      for (int64_t i = 0; i < n; ++i) xe.row(i) = x.row(r.tokens[i]);
      SwiGlu(*w, xe, &ye);  // [routed tokens, D]
      for (int64_t i = 0; i < n; ++i) {
        out.row(slot[e][i]) = r.weights[i] * ye.row(i);
      }
    }
  }
  for (const absl::Status& st : status) CARE_RETURN_IF_ERROR(st);
  y->setZero(T, D);
#pragma omp parallel for schedule(static) if (T * D >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) y->row(t) += out.row(t * k + j);
  }
  return absl::OkStatus();
}

class Qwen3MoeFamily : public DecoderFamily {
 public:
  absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                        MatrixRM* hidden) const override {
    const ModelConfig& c = ctx.config;
    CARE_RETURN_IF_ERROR(RunAttentionBlock(ctx, layer,
                                           {.qk_norm = true,
                                            .q_bias = c.attention_bias,
                                            .o_bias = c.attention_bias},
                                           hidden));
    if (c.IsMoeLayer(layer)) {
      return RunMlpBlock(
          ctx, layer,
          [&](const MatrixRM& x, MatrixRM* y) {
            return SparseMoe(ctx, layer, x, y);
          },
          /*blocked=*/false, hidden);
    }
    return RunDenseMlpBlock(ctx, layer, hidden);
  }
};

}  // namespace

std::unique_ptr<DecoderFamily> MakeQwen3MoeFamily() {
  return std::make_unique<Qwen3MoeFamily>();
}

}  // namespace care::engine
