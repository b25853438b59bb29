// A model family as the engine runs it: the io-level descriptor
// (io/model_family.h: config fields, tensors, converter support) extended
// with the layer forward. One file per family under engine/families/, built
// from the blocks in attention_block.h and mlp.h, and one row in the table
// of engine/families.cc. Internal to the engine.
#ifndef CARE_ENGINE_DECODER_FAMILY_H_
#define CARE_ENGINE_DECODER_FAMILY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/engine.h"
#include "care/engine/weight_loader.h"
#include "care/io/model_config.h"
#include "care/io/model_family.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct LayerContext {
  const ModelConfig& config;
  const TensorSource& weights;
  const LayerHooks& hooks;
  compute::Backend& backend;
  const compute::Matrix& rope_cos;  // [seq_len, rotary_dim / 2]
  const compute::Matrix& rope_sin;  // [seq_len, rotary_dim / 2]
  int64_t windows;
  int64_t seq_len;
  int64_t group_tokens;      // EngineOptions::group_tokens
  WeightPrefetch* prefetch;  // this layer's weights loaded ahead, or null
};

// Projection weight `name` [rows, cols] of the layer: from ctx.prefetch when
// it was loaded ahead, else loaded now.
absl::StatusOr<compute::Weight> LayerWeight(const LayerContext& ctx,
                                            const std::string& name,
                                            int64_t rows, int64_t cols);

class DecoderFamily : public ModelFamily {
 public:
  // Loads layer `layer`'s weights, runs every token of hidden [tokens, D]
  // through the layer in place, and drops the weights.
  virtual absl::Status RunLayer(const LayerContext& ctx, int64_t layer,
                                compute::Matrix* hidden) const = 0;

  // The 2-D weights of `layer` that are known before it runs (attention and
  // dense MLP projections), for WeightPrefetch. MoE experts are not listed:
  // which ones run depends on the routing.
  virtual std::vector<WeightRequest> LayerWeightRequests(
      const ModelConfig& config, int64_t layer) const = 0;
};

// config.family as the engine runs it; InvalidArgument naming the model_type
// when it has no forward here (a config parsed with other families).
absl::StatusOr<const DecoderFamily*> ForwardOf(const ModelConfig& config);

}  // namespace care::engine

#endif  // CARE_ENGINE_DECODER_FAMILY_H_
