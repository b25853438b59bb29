// The model head: final RMSNorm, lm_head (or the tied embedding), and the
// log-softmax over the vocabulary, computed in vocabulary chunks with a
// running log-sum-exp (compute::Backend::ScoreChunk) so that tokens × vocab
// floats never exist at once.
#ifndef CARE_ENGINE_LOGITS_H_
#define CARE_ENGINE_LOGITS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/engine.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

// The name of the output projection: model.embed_tokens.weight when
// tie_word_embeddings, lm_head.weight otherwise.
std::string LmHeadTensorName(const ModelConfig& config);

// NLL of targets[t] (t with targets[t] >= 0) given the last layer's hidden
// states [tokens, D] on `backend`. InvalidArgument when a target is >=
// vocab_size.
absl::StatusOr<NllSum> ScoreHiddenStates(const ModelConfig& config,
                                         const TensorSource& weights,
                                         compute::Backend& backend,
                                         const compute::Matrix& hidden,
                                         const std::vector<int32_t>& targets,
                                         int64_t block_elements);

// The same per token: [tokens] NLLs, 0 where targets[t] < 0.
absl::StatusOr<std::vector<double>> ScoreHiddenStatesEach(
    const ModelConfig& config, const TensorSource& weights,
    compute::Backend& backend, const compute::Matrix& hidden,
    const std::vector<int32_t>& targets, int64_t block_elements);

// All logits, [tokens, vocab], on the host.
absl::StatusOr<MatrixRM> ComputeLogits(const ModelConfig& config,
                                       const TensorSource& weights,
                                       compute::Backend& backend,
                                       const compute::Matrix& hidden);

}  // namespace care::engine

#endif  // CARE_ENGINE_LOGITS_H_
