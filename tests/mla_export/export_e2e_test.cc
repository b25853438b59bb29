// Issue 17 end to end: a job with output_layout OUTPUT_LAYOUT_DEEPSEEK_V3
// submitted with carectl runs through care-server and a real `care-worker
// serve` (the real pipeline); the job's report carries the layout fields,
// `carectl get` shows them, the written stock DeepSeek-V3 checkpoint
// reproduces the reported perplexity under `care-worker eval`, and the
// server's metrics count the job under its layout.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "mla_export/mla_e2e_util.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

class ExportEndToEndTest : public MlaEndToEndTest {};

TEST_F(ExportEndToEndTest, DeepseekV3JobThroughServerWorkerAndCarectl) {
  StartServeWorker();
  const std::string out = dir_ + "/outputs/stories-mla";
  CommandResult wait = SubmitDeepseekV3(out);
  ASSERT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  const std::string id = SubmittedId(wait);
  care::v1::Job job = Get(id);
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_EQ(job.spec().output_layout(), care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
  const care::v1::Report& r = job.report();
  EXPECT_EQ(r.output_layout(), care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
  EXPECT_EQ(r.rope_dim(), 8);
  EXPECT_EQ(r.freqfold(), 1);
  EXPECT_EQ(r.kv_lora_rank(), 24);  // 50 % of 2·4·8 = 32 = 24 + 8
  EXPECT_EQ(r.kv_width_per_layer_before(), 64);
  EXPECT_EQ(r.kv_width_per_layer_after(), 32);
  EXPECT_EQ(r.kv_width_after(), 5 * 32);
  EXPECT_TRUE(r.has_partial_rope_ppl());
  EXPECT_GT(r.converted().ppl(), r.original().ppl());

  CommandResult get = Carectl({"get", id});
  EXPECT_THAT(get.out, HasSubstr("deepseek_v3: rope_dim 8, freqfold 1, "
                                 "kv_lora_rank 24"));
  EXPECT_THAT(get.out, HasSubstr("partial rope only"));

  // The written checkpoint is a deepseek_v3 model the engine reloads with
  // the reported perplexity.
  ASSERT_NO_FATAL_FAILURE(ExpectReloadedPpl(out, r.converted().ppl()));
  const nlohmann::json config = nlohmann::json::parse(
      ReadFileOrEmpty(out + "/config.json"), nullptr, false);
  EXPECT_EQ(config.value("model_type", ""), "deepseek_v3");

  const std::string metrics = ScrapeMetrics(server_->metrics_address());
  EXPECT_EQ(SeriesValue(metrics,
                        "care_jobs_finished_by_layout_total{layout=\""
                        "deepseek_v3\",outcome=\"succeeded\"}"),
            1);
}

}  // namespace
}  // namespace care::testing
