// Shared helpers of the conversion pipeline tests.
#ifndef CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_
#define CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_

#include <string>
#include <vector>

#include "care/convert/pipeline.h"
#include "care/engine/engine.h"
#include "care/io/model.h"

namespace care::convert::testing {

// The tok512 id stream of the TinyStories text (stories260K and tinygqa
// share the tokenizer).
std::string TokenFile();
const std::vector<int32_t>& TokenStream();

// Small, fast calibration: 64 windows x 32 tokens, no evaluation.
ConvertOptions SmallOptions(const std::string& model, const std::string& out,
                            Budget budget, Method method);

// `windows` windows of `seq_len` tokens from the start of the stream.
engine::TokenWindows FirstWindows(int64_t windows, int64_t seq_len);

// Logits [tokens, vocab] of the model in `dir` on `windows` (the
// checkpoint's own projectors: dense, or latent when converted).
MatrixRM ModelLogits(const std::string& dir,
                     const engine::TokenWindows& windows);

// Every file of output directory `a` but the reports (which hold timings)
// has the same bytes in `b`; at least config.json and the weights.
void ExpectSameOutput(const std::string& a, const std::string& b);

}  // namespace care::convert::testing

#endif  // CARE_TESTS_CONVERT_PIPELINE_TEST_UTIL_H_
