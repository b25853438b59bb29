// Shared helpers of the DeepSeek-V3 export tests through the pipeline
// (export_pipeline_test, heal_pipeline_test): the export's options, the
// synthetic Qwen2 model, and the comparisons against the original model
// and the float64 reference (engine/deepseek_v3_reference.h).
#ifndef CARE_TESTS_MLA_EXPORT_EXPORT_TEST_UTIL_H_
#define CARE_TESTS_MLA_EXPORT_EXPORT_TEST_UTIL_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "care/convert/pipeline.h"
#include "care/engine/engine.h"

namespace care::convert::testing {

// SmallOptions (pipeline_test_util.h) at 50 % KV save with CARE, written in
// the deepseek-v3 layout with this rope split, o_proj refit off.
ConvertOptions DeepseekV3Options(const std::string& model,
                                 const std::string& out, int64_t rope_dim,
                                 int64_t freqfold);

// A Qwen2-shaped config: q/k/v biases, `kv_heads` KV heads of head_dim 8
// (D 32, 4 query heads, 2 layers, vocab 512).
nlohmann::json Qwen2Config(int64_t kv_heads);

// max |a − b| over all entries, and max |a|.
std::pair<double, double> MaxDiff(const MatrixRM& a, const MatrixRM& b);

// The float64 reference's logits [ids, vocab] on the deepseek_v3 checkpoint
// in `dir` (a test failure and an empty matrix when it cannot run).
MatrixRM ReferenceLogits(const std::string& dir,
                         const std::vector<int32_t>& ids);

// At full rank, the deepseek_v3 export in `out` computes the function of
// the model in `src`: the engine's logits of both on FirstWindows(2, 24),
// and the float64 reference's on the export's first window against the
// original's. `original` (if non-null) gets the original's logits.
void ExpectExportComputesOriginal(const std::string& src,
                                  const std::string& out, MatrixRM* original);

// The float64 reference agrees with the engine on the deepseek_v3
// checkpoint in `dir`, on the first window of 32 tokens.
void ExpectReferenceAgreesWithEngine(const std::string& dir);

}  // namespace care::convert::testing

#endif  // CARE_TESTS_MLA_EXPORT_EXPORT_TEST_UTIL_H_
