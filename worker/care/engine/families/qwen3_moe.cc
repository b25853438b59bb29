// Qwen3-MoE (Qwen3MoeForCausalLM): Qwen3 attention (q/k norms, head_dim
// default 128), and on the sparse layers a mixture of SwiGLU experts. The
// router (mlp.gate.weight [E, D]) gives a softmax over experts per token;
// the top k are kept (renormalized to sum 1 when norm_topk_prob), and each
// expert runs only on the tokens routed to it, its weights loaded just for
// that (unused experts are never read). Layers in mlp_only_layers, or off
// the decoder_sparse_step grid, use a dense MLP.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/attention_block.h"
#include "care/engine/families/gqa_family.h"
#include "care/engine/mlp.h"
#include "care/engine/routed_experts.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

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
  CARE_ASSIGN_OR_RETURN(
      compute::Weight gate,
      LoadWeightOn(be, ctx.weights, io::names::Router(layer), E, D));
  CARE_ASSIGN_OR_RETURN(compute::Matrix logits, be.Allocate(T, E));
  CARE_RETURN_IF_ERROR(
      be.Linear(x, gate, nullptr, &logits, false));  // [tokens, E]
  CARE_ASSIGN_OR_RETURN(compute::Routing routing,
                        be.RouteTopK(logits, k, c.norm_topk_prob));
  logits = {};
  return RunRoutedExperts(be, ctx.weights, layer, x, routing, E,
                          c.moe_intermediate_size, y);
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
