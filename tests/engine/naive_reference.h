// A deliberately plain forward pass for tests: double precision, one token
// at a time, loops only, written from the transformers model code (Llama,
// Qwen2, Qwen3, Qwen3-MoE; RoPE default/linear/llama3/yarn, partial rotary;
// CARE latent K/V). Shares no code with the engine.
#ifndef CARE_TESTS_ENGINE_NAIVE_REFERENCE_H_
#define CARE_TESTS_ENGINE_NAIVE_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::engine::testing {

using Rows = std::vector<std::vector<double>>;  // [tokens][n]

struct NaiveResult {
  Rows logits;                 // [T][V]
  std::vector<Rows> kv_input;  // [L][T][D]: post-input_layernorm states
};

// One window of token ids, positions 0..T-1.
NaiveResult NaiveForward(const ModelConfig& config, const TensorSource& weights,
                         const std::vector<int32_t>& ids);

// inv_freq and the cos/sin factor, straight from modeling_rope_utils.
std::vector<double> NaiveInvFreq(const ModelConfig& config,
                                 double* attention_factor);

}  // namespace care::engine::testing

#endif  // CARE_TESTS_ENGINE_NAIVE_REFERENCE_H_
