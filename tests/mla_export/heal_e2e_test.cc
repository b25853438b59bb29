// Issue 24 end to end: a DeepSeek-V3 job with healing (HealingSpec, via
// carectl's --heal flags) runs through care-server and a real `care-worker
// serve`; the job's report carries the healing summary and the per-layer
// attention-output errors before/after, `carectl get` shows them, and the
// written checkpoint reproduces the reported (healed) perplexity under
// `care-worker eval`.
#include <filesystem>

#include "gmock/gmock.h"
#include "mla_export/mla_e2e_util.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

class HealEndToEndTest : public MlaEndToEndTest {};

TEST_F(HealEndToEndTest, HealedDeepseekV3JobThroughServerWorkerAndCarectl) {
  StartServeWorker();
  const std::string out = dir_ + "/outputs/stories-mla-healed";
  CommandResult wait =
      SubmitDeepseekV3(out, {"--heal", "local", "--heal-inputs", "healed",
                             "--heal-tokens", "8192", "--heal-steps", "40"});
  ASSERT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  const std::string id = SubmittedId(wait);
  care::v1::Job job = Get(id);
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_EQ(job.spec().healing().mode(), care::v1::HEALING_MODE_LOCAL);
  EXPECT_EQ(job.spec().healing().inputs(), care::v1::HEALING_INPUTS_HEALED);
  const care::v1::Report& r = job.report();
  ASSERT_TRUE(r.has_healing());
  EXPECT_EQ(r.healing().inputs(), care::v1::HEALING_INPUTS_HEALED);
  EXPECT_EQ(r.healing().train_tokens(), 8192);
  EXPECT_GT(r.healing().seconds(), 0);
  EXPECT_LT(r.healing().heldout_nll_after(), r.healing().heldout_nll_before());
  ASSERT_EQ(r.layers_size(), 5);
  int accepted = 0;
  for (const care::v1::LayerReport& l : r.layers()) {
    EXPECT_GT(l.heal_error_before(), 0) << "layer " << l.layer();
    EXPECT_LE(l.heal_error_after(), l.heal_error_before())
        << "layer " << l.layer();
    accepted += l.heal_accepted();
  }
  EXPECT_GE(accepted, 3);
  // Healing has its own stage, in the report and in the server's metrics.
  bool heal_timed = false;
  for (const care::v1::StageTiming& t : r.timings()) {
    if (t.stage() == care::v1::STAGE_HEALING) heal_timed = t.seconds() > 0;
  }
  EXPECT_TRUE(heal_timed);
  const std::string metrics = ScrapeMetrics(server_->metrics_address());
  EXPECT_EQ(SeriesValue(metrics, "care_job_heal_error_ratio_count"), 5)
      << metrics;
  EXPECT_EQ(SeriesValue(metrics,
                        "care_stage_duration_seconds_count{stage=\"healing\"}"),
            1);

  CommandResult get = Carectl({"get", id});
  EXPECT_THAT(get.out, HasSubstr("healing"));
  EXPECT_THAT(get.out, HasSubstr("healed inputs, 8192 tokens"));
  EXPECT_THAT(get.out, HasSubstr("healing error"));

  // The written checkpoint is the healed model the report evaluated.
  ASSERT_NO_FATAL_FAILURE(ExpectReloadedPpl(out, r.converted().ppl()));
}

TEST_F(HealEndToEndTest, HealingOnTheLatentLayoutIsRejected) {
  CommandResult submit = Carectl(
      {"submit", "--plain", "--model", model_, "--out",
       dir_ + "/outputs/latent-heal", "--kv-save", "0.5", "--heal", "local",
       "--calib", fixtures_ + "/tinystories/tinystories_val_head.txt"});
  EXPECT_NE(submit.exit_code, 0);
  EXPECT_THAT(submit.out + submit.err, HasSubstr("healing.mode"));
}

}  // namespace
}  // namespace care::testing
