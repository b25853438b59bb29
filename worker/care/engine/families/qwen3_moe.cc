// Qwen3-MoE (Qwen3MoeForCausalLM): Qwen3 attention (q/k norms, head_dim
// default 128), and on the sparse layers a mixture of SwiGLU experts. The
// router (mlp.gate.weight [E, D]) gives a softmax over experts per token;
// the top k are kept (renormalized to sum 1 when norm_topk_prob), and each
// expert runs only on the tokens routed to it, its weights loaded just for
// that (unused experts are never read). Layers in mlp_only_layers, or off
// the decoder_sparse_step grid, use a dense MLP.
#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/attention_block.h"
#include "care/engine/families/gqa_family.h"
#include "care/engine/mlp.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

struct Route {
  std::vector<int64_t> tokens;  // token rows routed to the expert
  std::vector<int64_t> slots;   // their rows t*k + j of the combined output
  std::vector<float> weights;   // routing weights
};

// Per expert, the tokens routed to it. Token t's choice j goes to slot
// t*k + j' where j' counts t's experts in ascending expert order, so summing
// a token's k slots in order adds its experts in expert order, whatever the
// thread count (the sum the sequential loop would form).
std::vector<Route> Routes(const compute::Routing& r, int64_t E) {
  std::vector<Route> routes(E);
  const int64_t T = r.tokens, k = r.k;
  std::vector<std::vector<std::pair<int32_t, float>>> per_token(T);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      per_token[t].emplace_back(r.experts[t * k + j], r.weights[t * k + j]);
    }
    std::sort(per_token[t].begin(), per_token[t].end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      Route& route = routes[per_token[t][j].first];
      route.tokens.push_back(t);
      route.slots.push_back(t * k + j);
      route.weights.push_back(per_token[t][j].second);
    }
  }
  return routes;
}

absl::Status SparseMoe(const LayerContext& ctx, int64_t layer,
                       const compute::Matrix& x, compute::Matrix* y) {
  const ModelConfig& c = ctx.config;
  compute::Backend& be = ctx.backend;
  const int64_t D = c.hidden_size, E = c.num_experts;
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > E) {
    return absl::InvalidArgumentError(absl::StrCat("num_experts_per_tok ",
                                                   c.num_experts_per_tok,
                                                   " is outside [1, ", E, "]"));
  }
  const int64_t T = x.rows, k = c.num_experts_per_tok;
  std::vector<Route> routes;
  {
    CARE_ASSIGN_OR_RETURN(
        compute::Weight gate,
        LoadWeightOn(be, ctx.weights, io::names::Router(layer), E, D));
    CARE_ASSIGN_OR_RETURN(compute::Matrix logits, be.Allocate(T, E));
    CARE_RETURN_IF_ERROR(
        be.Linear(x, gate, nullptr, &logits, false));  // [tokens, E]
    CARE_ASSIGN_OR_RETURN(compute::Routing routing,
                          be.RouteTopK(logits, k, c.norm_topk_prob));
    routes = Routes(routing, E);
  }
  CARE_ASSIGN_OR_RETURN(compute::Matrix out, be.Allocate(T * k, D));
  // One expert per task (cpu: per thread): the per-expert GEMMs are small
  // (tokens/E·k rows), where a GEMM split over threads spends most of its
  // time synchronizing; experts side by side keep every core on useful
  // work. Each expert writes its own slots of `out`. Unused experts are
  // never read.
  CARE_RETURN_IF_ERROR(be.ForEach(E, [&](int64_t e) -> absl::Status {
    const Route& r = routes[e];
    if (r.tokens.empty()) return absl::OkStatus();
    CARE_ASSIGN_OR_RETURN(
        SwiGluWeights w,
        LoadSwiGlu(
            be, ctx.weights,
            io::names::Layer(layer, absl::StrCat("mlp.experts.", e, ".")), D,
            c.moe_intermediate_size, /*prefetch=*/nullptr));
    const int64_t n = r.tokens.size();
    CARE_ASSIGN_OR_RETURN(compute::Matrix xe, be.Allocate(n, D));
    CARE_ASSIGN_OR_RETURN(compute::Matrix ye, be.Allocate(n, D));
    CARE_RETURN_IF_ERROR(be.GatherRows(x, r.tokens, &xe));  // [routed, D]
    CARE_RETURN_IF_ERROR(SwiGlu(be, w, xe, &ye));           // [routed, D]
    return be.ScatterRows(ye, r.slots, r.weights, &out, false);
  }));
  return be.SumRowGroups(out, k, y);  // [tokens, D]
}

class Qwen3MoeFamily : public GqaFamily {
 public:
  Qwen3MoeFamily()
      : GqaFamily({.model_type = "qwen3_moe",
                   .default_head_dim = 128,
                   .qk_norm = true}) {}

  absl::Status ParseFields(const ConfigReader& r,
                           ModelConfig& c) const override {
    CARE_RETURN_IF_ERROR(GqaFamily::ParseFields(r, c));
    CARE_ASSIGN_OR_RETURN(c.num_experts, r.PositiveInt("num_experts"));
    CARE_ASSIGN_OR_RETURN(c.num_experts_per_tok,
                          r.PositiveInt("num_experts_per_tok"));
    if (c.num_experts_per_tok > c.num_experts) {
      return r.Error(
          "num_experts_per_tok",
          absl::StrCat("(", c.num_experts_per_tok, ") exceeds num_experts (",
                       c.num_experts, ")"));
    }
    CARE_ASSIGN_OR_RETURN(c.moe_intermediate_size,
                          r.PositiveInt("moe_intermediate_size"));
    CARE_ASSIGN_OR_RETURN(c.norm_topk_prob, r.BoolOr("norm_topk_prob", false));
    CARE_ASSIGN_OR_RETURN(c.decoder_sparse_step,
                          r.IntOr("decoder_sparse_step", 1));
    if (c.decoder_sparse_step < 1) {
      return r.Error("decoder_sparse_step", "must be >= 1");
    }
    CARE_ASSIGN_OR_RETURN(c.mlp_only_layers, r.IntList("mlp_only_layers"));
    for (int64_t l : c.mlp_only_layers) {
      if (l < 0 || l >= c.num_hidden_layers) {
        return r.Error("mlp_only_layers",
                       absl::StrCat("has layer ", l, " outside [0, ",
                                    c.num_hidden_layers, ")"));
      }
    }
    return absl::OkStatus();
  }

  bool IsMoeLayer(const ModelConfig& c, int64_t layer) const override {
    if (c.num_experts <= 0) return false;
    if (std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), layer) !=
        c.mlp_only_layers.end()) {
      return false;
    }
    return c.decoder_sparse_step > 0 &&
           (layer + 1) % c.decoder_sparse_step == 0;
  }

 protected:
  void AppendMlpTensors(const ModelConfig& c, int64_t l,
                        std::vector<io::ExpectedTensor>& out) const override {
    if (!c.IsMoeLayer(l)) return GqaFamily::AppendMlpTensors(c, l, out);
    const int64_t d = c.hidden_size, im = c.moe_intermediate_size;
    out.push_back({io::names::Router(l), {c.num_experts, d}});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      out.push_back({io::names::ExpertGate(l, e), {im, d}});
      out.push_back({io::names::ExpertUp(l, e), {im, d}});
      out.push_back({io::names::ExpertDown(l, e), {d, im}});
    }
  }

  absl::Status RunMlp(const LayerContext& ctx, int64_t layer,
                      compute::Matrix* hidden) const override {
    if (!ctx.config.IsMoeLayer(layer)) {
      return GqaFamily::RunMlp(ctx, layer, hidden);
    }
    return RunMlpBlock(
        ctx, layer,
        [&](const compute::Matrix& x, compute::Matrix* y) {
          return SparseMoe(ctx, layer, x, y);
        },
        /*blocked=*/false, hidden);
  }
};

}  // namespace

const DecoderFamily& Qwen3Moe() {
  static const Qwen3MoeFamily family;
  return family;
}

}  // namespace care::engine
