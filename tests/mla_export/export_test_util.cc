#include "mla_export/export_test_util.h"

#include <gtest/gtest.h>

#include "convert/pipeline_test_util.h"
#include "engine/deepseek_v3_reference.h"

namespace care::convert::testing {

ConvertOptions DeepseekV3Options(const std::string& model,
                                 const std::string& out, int64_t rope_dim,
                                 int64_t freqfold) {
  ConvertOptions o =
      SmallOptions(model, out, Budget::KvSave(0.5), Method::kCare);
  o.output_layout = OutputLayout::kDeepseekV3;
  o.mla.rope_dim = rope_dim;
  o.mla.freqfold = freqfold;
  // One candidate per split: the o_proj refit (default auto) has its own
  // tests (o_proj_refit_test.cc, ExportPipelineTest.OProjRefit*).
  o.mla.o_proj_refit = OProjRefitMode::kOff;
  return o;
}

nlohmann::json Qwen2Config(int64_t kv_heads) {
  return {{"architectures", {"Qwen2ForCausalLM"}},
          {"model_type", "qwen2"},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", kv_heads},
          {"vocab_size", 512},
          {"max_position_embeddings", 256},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false}};
}

std::pair<double, double> MaxDiff(const MatrixRM& a, const MatrixRM& b) {
  return {(a - b).cwiseAbs().maxCoeff(), a.cwiseAbs().maxCoeff()};
}

MatrixRM ReferenceLogits(const std::string& dir,
                         const std::vector<int32_t>& ids) {
  absl::StatusOr<care::testing::RefRows> rows =
      care::testing::DeepseekV3ReferenceLogits(dir, ids);
  EXPECT_TRUE(rows.ok()) << rows.status();
  if (!rows.ok()) return {};
  MatrixRM m(rows->size(), (*rows)[0].size());
  for (size_t t = 0; t < rows->size(); ++t) {
    for (size_t v = 0; v < (*rows)[t].size(); ++v) m(t, v) = (*rows)[t][v];
  }
  return m;
}

void ExpectExportComputesOriginal(const std::string& src,
                                  const std::string& out, MatrixRM* original) {
  const engine::TokenWindows windows = FirstWindows(2, 24);
  const MatrixRM before = ModelLogits(src, windows);
  const MatrixRM exported = ModelLogits(out, windows);
  if (original != nullptr) *original = before;
  ASSERT_EQ(before.rows(), exported.rows());
  ASSERT_EQ(before.cols(), exported.cols());
  // Float32 weights and activations through two layers (~1e-6 relative
  // each), the latent norm (and q_lora's, with biases) in its linear regime
  // (<= 2^-30 relative each): 1e-4 of the logit scale leaves two orders of
  // magnitude of margin; a wrong rotation, bias or rank moves it by O(1).
  auto [diff, scale] = MaxDiff(before, exported);
  EXPECT_LT(diff, 1e-4 * (1 + scale));

  // The float64 reference on the written checkpoint, first window.
  const std::vector<int32_t> ids(windows.ids.begin(),
                                 windows.ids.begin() + windows.seq_len);
  const MatrixRM ref = ReferenceLogits(out, ids);
  ASSERT_EQ(ref.rows(), windows.seq_len);
  auto [rdiff, rscale] = MaxDiff(ref, before.topRows(windows.seq_len));
  EXPECT_LT(rdiff, 1e-4 * (1 + rscale));
}

void ExpectReferenceAgreesWithEngine(const std::string& dir) {
  const engine::TokenWindows first = FirstWindows(1, 32);
  const MatrixRM engine_logits = ModelLogits(dir, first);
  const MatrixRM ref = ReferenceLogits(dir, first.ids);
  ASSERT_EQ(ref.rows(), 32);
  ASSERT_EQ(ref.cols(), engine_logits.cols());
  // The engine in float32 (~1e-6 relative per layer on these small models)
  // against float64: 1e-4 of the logit scale leaves two orders of margin,
  // while a wrong rotation, norm or latent moves the logits by O(1).
  auto [diff, scale] = MaxDiff(ref, engine_logits);
  EXPECT_LT(diff, 1e-4 * (1 + scale)) << dir;
}

}  // namespace care::convert::testing
