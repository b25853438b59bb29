// The worker service's pure mappings: JobSpec -> pipeline options, the
// pipeline's JSON report -> Report, and runner errors -> failure classes.
#include "service/job_options.h"

#include <filesystem>
#include <fstream>

#include "care/convert/mla_export/options.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "proto/api/spec_validation.h"
#include "service/failure.h"
#include "support/fixtures.h"

namespace care::worker {
namespace {

using ::testing::HasSubstr;

care::v1::Job JobFrom(const std::string& spec_text) {
  care::v1::Job job;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      spec_text, job.mutable_spec()));
  job.set_attempt(1);
  return job;
}

constexpr char kSpec[] = R"pb(
  model_uri: "hf://org/model@v2"
  output_uri: "file:///tmp/care-nonexistent-out"
  kv_budget { rank_per_matrix: 12 }
  method: METHOD_ASVD
  rank_allocation: RANK_ALLOCATION_AUTO
  calibration {
    dataset_uri: "/data/c.jsonl"
    samples: 64
    sequence_length: 16
    seed: 9
  }
  evaluation {
    dataset_uri: "file:///data/e.u16"
    window_length: 128
    max_windows: 4
    rolling_stride: 64
    tasks { uri: "file:///data/arc.jsonl" format: "arc" limit: 100 }
    tasks { name: "hs" uri: "/data/hellaswag.jsonl" }
  }
  damping: 0
)pb";

TEST(JobOptions, EveryFieldReachesThePipeline) {
  auto o = PipelineOptionsFromJob(JobFrom(kSpec), 3);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["model"], "hf://org/model@v2");
  EXPECT_EQ((*o)["output_dir"], "/tmp/care-nonexistent-out");
  EXPECT_EQ((*o)["budget"]["rank"], 12);
  EXPECT_FALSE((*o)["budget"].contains("kv_save"));
  EXPECT_EQ((*o)["method"], "asvd");
  EXPECT_EQ((*o)["allocation"], "auto");
  EXPECT_EQ((*o)["damping"], 0.0);  // Explicit zero, not the default.
  EXPECT_EQ((*o)["calib_data"], "/data/c.jsonl");
  EXPECT_EQ((*o)["calib_samples"], 64);
  EXPECT_EQ((*o)["calib_seq_len"], 16);
  EXPECT_EQ((*o)["seed"], 9);
  EXPECT_EQ((*o)["eval_data"], "/data/e.u16");
  EXPECT_EQ((*o)["eval_seq_len"], 128);
  EXPECT_EQ((*o)["eval_windows"], 4);
  ASSERT_EQ((*o)["eval_tasks"].size(), 2u);
  EXPECT_EQ((*o)["eval_tasks"][0]["path"], "/data/arc.jsonl");
  EXPECT_EQ((*o)["eval_tasks"][0]["format"], "arc");
  EXPECT_EQ((*o)["eval_tasks"][0]["limit"], 100);
  EXPECT_EQ((*o)["eval_tasks"][1]["name"], "hs");
  EXPECT_EQ((*o)["eval_tasks"][1]["format"], "auto");
  EXPECT_EQ((*o)["eval_rolling_stride"], 64);
  EXPECT_EQ((*o)["eval_rolling_documents"], "whole");
  EXPECT_EQ((*o)["threads"], 3);
  EXPECT_EQ((*o)["overwrite"], false);
}

TEST(JobOptions, DefaultsOfTheOptionalFields) {
  auto o = PipelineOptionsFromJob(JobFrom(kSpec), 0);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["sequential"], false);
  EXPECT_EQ((*o)["calib_text_field"], "text");
  EXPECT_EQ((*o)["eval_text_field"], "text");
  EXPECT_EQ((*o)["eval_prepend_bos"], false);
  EXPECT_EQ((*o)["output_dtype"], "source");
  // Held-out windows only when the allocation needs them or the job asks.
  EXPECT_EQ((*o)["heldout_figures"], false);
}

TEST(JobOptions, HeldoutFiguresReachThePipeline) {
  care::v1::Job job = JobFrom(kSpec);
  job.mutable_spec()->mutable_evaluation()->set_heldout_figures(true);
  auto o = PipelineOptionsFromJob(job, 0);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["heldout_figures"], true);
}

// The fields this worker used to refuse: each now reaches the pipeline.
TEST(JobOptions, SequentialTextFieldsBosAndDtypeReachThePipeline) {
  care::v1::Job job = JobFrom(kSpec);
  ASSERT_TRUE(google::protobuf::TextFormat::MergeFromString(
      R"pb(
        calibration { sequential: true text_field: "body" }
        evaluation { prepend_bos: true text_field: "story" }
        output_dtype: OUTPUT_DTYPE_BF16
      )pb",
      job.mutable_spec()));
  auto o = PipelineOptionsFromJob(job, 0);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["sequential"], true);
  EXPECT_EQ((*o)["calib_text_field"], "body");
  EXPECT_EQ((*o)["eval_text_field"], "story");
  EXPECT_EQ((*o)["eval_prepend_bos"], true);
  EXPECT_EQ((*o)["output_dtype"], "bf16");
  for (const auto& [dtype, name] :
       std::vector<std::pair<care::v1::OutputDtype, std::string>>{
           {care::v1::OUTPUT_DTYPE_F32, "f32"},
           {care::v1::OUTPUT_DTYPE_F16, "f16"}}) {
    job.mutable_spec()->set_output_dtype(dtype);
    auto d = PipelineOptionsFromJob(job, 0);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ((*d)["output_dtype"], name);
  }
}

TEST(JobOptions, UnknownDtypeValueIsAUserErrorNamingTheField) {
  care::v1::Job job = JobFrom(kSpec);
  // An enum value from a newer API version than this worker knows.
  job.mutable_spec()->set_output_dtype(static_cast<care::v1::OutputDtype>(42));
  auto o = PipelineOptionsFromJob(job, 0);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(o.status().message(), HasSubstr("output_dtype"));
  EXPECT_THAT(o.status().message(), HasSubstr("42"));
}

TEST(JobOptions, OverwriteOnlyEmptyOrOwnEarlierOutput) {
  const std::string dir = care::testing::MakeTempDir("job-options");
  care::v1::Job job = JobFrom(kSpec);
  job.mutable_spec()->set_output_uri(dir + "/out");
  std::filesystem::create_directories(dir + "/out");
  EXPECT_EQ((*PipelineOptionsFromJob(job, 0))["overwrite"], true);  // Empty.
  std::ofstream(dir + "/out/care_report.json") << "{}";
  EXPECT_EQ((*PipelineOptionsFromJob(job, 0))["overwrite"], false);
  job.set_attempt(2);  // A retry may replace its earlier attempt's output.
  EXPECT_EQ((*PipelineOptionsFromJob(job, 0))["overwrite"], true);
  std::filesystem::remove(dir + "/out/care_report.json");
  std::ofstream(dir + "/out/user-file") << "x";
  EXPECT_EQ((*PipelineOptionsFromJob(job, 0))["overwrite"], false);
  std::filesystem::remove_all(dir);
}

TEST(JobOptions, ReportFromPipelineJson) {
  nlohmann::json r = {
      {"original", {{"ppl", 3.5}, {"mean_nll", 1.25}, {"predictions", 4080}}},
      {"converted", {{"ppl", 3.75}, {"mean_nll", 1.32}, {"predictions", 4080}}},
      {"kv_width_before", 640},
      {"kv_width_after", 320},
      {"layers",
       {{{"layer", 0},
         {"rank_k", 16},
         {"rank_v", 12},
         {"heldout_error_k", 0.01},
         {"heldout_error_v", 0.2},
         {"retained_energy_k", 0.99},
         {"retained_energy_v", 0.8}}}},
      {"timings_s",
       {{"write", 0.5}, {"load", 1.0}, {"decompose", 2.0}, {"allocate", 0.25}}},
      {"method", "care-c"},
      {"damping", 0.01},
      {"output_dir", "/out/x"},
      {"rolling",
       {{"max_length", 128},
        {"stride", 64},
        {"original",
         {{"documents", 2},
          {"windows", 9},
          {"predictions", 1000},
          {"words", 200},
          {"bytes", 900},
          {"token_perplexity", 3.5},
          {"word_perplexity", 20.0},
          {"byte_perplexity", 1.5},
          {"bits_per_byte", 0.58}}},
        {"converted",
         {{"documents", 2},
          {"windows", 9},
          {"predictions", 1000},
          {"words", 200},
          {"bytes", 900},
          {"token_perplexity", 4.0},
          {"word_perplexity", 25.0},
          {"byte_perplexity", 1.6},
          {"bits_per_byte", 0.68}}}}},
      {"tasks",
       {{{"name", "arc"},
         {"path", "/data/arc.jsonl"},
         {"format", "arc"},
         {"items", 100},
         {"original",
          {{"acc", 0.75},
           {"acc_stderr", 0.04},
           {"acc_norm", 0.7},
           {"acc_norm_stderr", 0.05}}},
         {"converted",
          {{"acc", 0.5},
           {"acc_stderr", 0.05},
           {"acc_norm", 0.25},
           {"acc_norm_stderr", 0.04}}}}}}};
  care::v1::JobSpec spec;
  spec.set_rank_allocation(care::v1::RANK_ALLOCATION_ADJUSTED);
  auto report = ReportFromPipelineJson(r, spec);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->original().predictions(), 4080);
  EXPECT_DOUBLE_EQ(report->converted().ppl(), 3.75);
  EXPECT_EQ(report->kv_width_after(), 320);
  ASSERT_EQ(report->layers_size(), 1);
  EXPECT_EQ(report->layers(0).rank_v(), 12);
  EXPECT_DOUBLE_EQ(report->layers(0).v_relative_error(), 0.2);
  // Pipeline order; allocate folded into decomposing.
  ASSERT_EQ(report->timings_size(), 3);
  EXPECT_EQ(report->timings(0).stage(), care::v1::STAGE_LOADING);
  EXPECT_EQ(report->timings(1).stage(), care::v1::STAGE_DECOMPOSING);
  EXPECT_DOUBLE_EQ(report->timings(1).seconds(), 2.25);
  EXPECT_EQ(report->timings(2).stage(), care::v1::STAGE_WRITING);
  EXPECT_EQ(report->method(), care::v1::METHOD_CARE_C);
  EXPECT_EQ(report->rank_allocation(), care::v1::RANK_ALLOCATION_ADJUSTED);
  EXPECT_EQ(report->output_uri(), "/out/x");
  EXPECT_EQ(report->rolling_original().predictions(), 1000);
  EXPECT_DOUBLE_EQ(report->rolling_converted().word_perplexity(), 25.0);
  EXPECT_DOUBLE_EQ(report->rolling_original().bits_per_byte(), 0.58);
  ASSERT_EQ(report->task_accuracy_size(), 1);
  EXPECT_EQ(report->task_accuracy(0).name(), "arc");
  EXPECT_EQ(report->task_accuracy(0).items(), 100);
  EXPECT_DOUBLE_EQ(report->task_accuracy(0).original().acc(), 0.75);
  EXPECT_DOUBLE_EQ(report->task_accuracy(0).converted().acc_norm(), 0.25);
  EXPECT_DOUBLE_EQ(report->task_accuracy(0).converted().acc_stderr(), 0.05);

  // A run that said it ran the held-out windows must carry their errors;
  // one that did not has none, and the API's relative errors are 0.
  r["calibration"] = {{"heldout_run", true}};
  r["layers"][0].erase("heldout_error_k");
  auto missing = ReportFromPipelineJson(r, spec);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("heldout_error_k"));
  r["calibration"]["heldout_run"] = false;
  auto skipped = ReportFromPipelineJson(r, spec);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_DOUBLE_EQ(skipped->layers(0).k_relative_error(), 0);
  EXPECT_DOUBLE_EQ(skipped->layers(0).v_relative_error(), 0);
  EXPECT_DOUBLE_EQ(skipped->layers(0).k_retained_energy(), 0.99);
  r["calibration"]["heldout_run"] = "no";
  EXPECT_FALSE(ReportFromPipelineJson(r, spec).ok());
  r["calibration"]["heldout_run"] = true;
  r["layers"][0]["heldout_error_k"] = 0.01;

  r.erase("kv_width_after");
  auto broken = ReportFromPipelineJson(r, spec);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr("kv_width_after"));
}

TEST(JobOptions, DeepseekV3FieldsReachThePipelineAndComeBack) {
  auto o = PipelineOptionsFromJob(JobFrom(R"pb(
                                    model_uri: "/m"
                                    output_uri: "/tmp/care-nonexistent-out"
                                    method: METHOD_PCA
                                    output_layout: OUTPUT_LAYOUT_DEEPSEEK_V3
                                    rope_dim: 32
                                    kv_lora_rank: 512
                                    no_kv_balance: true
                                    calibration { dataset_uri: "/c.txt" }
                                  )pb"),
                                  1);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["layout"], "deepseek_v3");
  EXPECT_EQ((*o)["method"], "pca");
  EXPECT_EQ((*o)["rope_dim"], 32);
  EXPECT_EQ((*o)["freqfold"], 0);  // auto
  EXPECT_EQ((*o)["kv_lora_rank"], 512);
  EXPECT_EQ((*o)["kv_balance"], false);
  auto latent = PipelineOptionsFromJob(JobFrom(kSpec), 1);
  ASSERT_TRUE(latent.ok());
  EXPECT_EQ((*latent)["layout"], "latent");
  EXPECT_FALSE(latent->contains("rope_dim"));

  nlohmann::json r = {{"kv_width_before", 640},
                      {"kv_width_after", 320},
                      {"layers",
                       {{{"layer", 0},
                         {"rank_k", 24},
                         {"rank_v", 24},
                         {"heldout_error_k", 0.125},
                         {"heldout_error_v", 0.25},
                         {"retained_energy_k", 0.875},
                         {"retained_energy_v", 0.875},
                         {"rope_energy", 0.5},
                         {"nope_score_error", 0.0625}}}},
                      {"method", "pca"},
                      {"damping", 0.01},
                      {"output_dir", "/out/x"},
                      {"deepseek_v3",
                       {{"rope_dim", 8},
                        {"freqfold", 2},
                        {"kv_lora_rank", 24},
                        {"kv_width_per_layer_before", 64},
                        {"kv_width_per_layer_after", 32},
                        {"heldout_nll_partial_rope", 2.5},
                        {"eval_ppl_partial_rope", 9.75}}}};
  auto report = ReportFromPipelineJson(r, care::v1::JobSpec());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->method(), care::v1::METHOD_PCA);
  EXPECT_EQ(report->output_layout(), care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
  EXPECT_EQ(report->rope_dim(), 8);
  EXPECT_EQ(report->freqfold(), 2);
  EXPECT_EQ(report->kv_lora_rank(), 24);
  EXPECT_EQ(report->kv_width_per_layer_before(), 64);
  EXPECT_EQ(report->kv_width_per_layer_after(), 32);
  EXPECT_DOUBLE_EQ(report->partial_rope_heldout_nll(), 2.5);
  EXPECT_DOUBLE_EQ(report->partial_rope_ppl(), 9.75);
  // The joint latent's per-layer entry, with the rope split's numbers.
  ASSERT_EQ(report->layers_size(), 1);
  EXPECT_EQ(report->layers(0).rank_k(), 24);
  EXPECT_DOUBLE_EQ(report->layers(0).v_relative_error(), 0.25);
  EXPECT_DOUBLE_EQ(report->layers(0).rope_energy(), 0.5);
  EXPECT_DOUBLE_EQ(report->layers(0).nope_score_error(), 0.0625);
  r["layers"][0].erase("nope_score_error");
  auto no_correction = ReportFromPipelineJson(r, care::v1::JobSpec());
  ASSERT_TRUE(no_correction.ok()) << no_correction.status();
  EXPECT_TRUE(no_correction->layers(0).has_rope_energy());
  EXPECT_FALSE(no_correction->layers(0).has_nope_score_error());
  r["deepseek_v3"].erase("kv_lora_rank");
  auto broken = ReportFromPipelineJson(r, care::v1::JobSpec());
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr("kv_lora_rank"));
}

// The server fills a healing spec's unset fields with the API's defaults
// (ApplyJobSpecDefaults): they must be the pipeline's own.
TEST(JobOptions, HealingDefaultsAreThePipelines) {
  const care::convert::MlaExportOptions o;
  EXPECT_EQ(o.heal_tokens, care::api::kDefaultHealingTokens);
  EXPECT_EQ(o.heal_steps, care::api::kDefaultHealingSteps);
}

TEST(JobOptions, HealingReachesThePipelineAndComesBack) {
  auto o = PipelineOptionsFromJob(JobFrom(R"pb(
                                    model_uri: "/m"
                                    output_uri: "/tmp/care-nonexistent-out"
                                    output_layout: OUTPUT_LAYOUT_DEEPSEEK_V3
                                    kv_budget { kv_save_fraction: 0.5 }
                                    calibration { dataset_uri: "/c.txt" }
                                    healing {
                                      mode: HEALING_MODE_LOCAL
                                      inputs: HEALING_INPUTS_HEALED
                                      dataset_uri: "file:///h.txt"
                                      tokens: 4096
                                      steps: 30
                                    }
                                  )pb"),
                                  1);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ((*o)["heal"]["mode"], "local");
  EXPECT_EQ((*o)["heal"]["inputs"], "healed");
  EXPECT_EQ((*o)["heal"]["data"], "/h.txt");
  EXPECT_EQ((*o)["heal"]["tokens"], 4096);
  EXPECT_EQ((*o)["heal"]["steps"], 30);

  nlohmann::json r = {{"kv_width_before", 640},
                      {"kv_width_after", 320},
                      {"layers", nlohmann::json::array()},
                      {"method", "care"},
                      {"damping", 0.01},
                      {"output_dir", "/out/x"},
                      {"deepseek_v3",
                       {{"rope_dim", 8},
                        {"freqfold", 1},
                        {"kv_lora_rank", 24},
                        {"kv_width_per_layer_before", 64},
                        {"kv_width_per_layer_after", 32},
                        {"heldout_nll_partial_rope", 2.5},
                        {"heal",
                         {{"inputs", "healed"},
                          {"train_tokens", 4096},
                          {"heldout_tokens", 512},
                          {"seconds", 1.5},
                          {"heldout_nll_before", 2.5},
                          {"heldout_nll_after", 2.1},
                          {"layers",
                           {{{"heldout_error_before", 0.4},
                             {"heldout_error_after", 0.1},
                             {"accepted", true}},
                            {{"heldout_error_before", 0.2},
                             {"heldout_error_after", 0.2},
                             {"accepted", false}}}}}}}}};
  auto report = ReportFromPipelineJson(r, care::v1::JobSpec());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->has_healing());
  EXPECT_EQ(report->healing().inputs(), care::v1::HEALING_INPUTS_HEALED);
  EXPECT_EQ(report->healing().train_tokens(), 4096);
  EXPECT_DOUBLE_EQ(report->healing().heldout_nll_after(), 2.1);
  ASSERT_EQ(report->layers_size(), 2);
  EXPECT_EQ(report->layers(1).layer(), 1);
  EXPECT_DOUBLE_EQ(report->layers(0).heal_error_before(), 0.4);
  EXPECT_DOUBLE_EQ(report->layers(0).heal_error_after(), 0.1);
  EXPECT_TRUE(report->layers(0).heal_accepted());
  EXPECT_FALSE(report->layers(1).heal_accepted());
}

TEST(Failure, ClassesByStatusCode) {
  care::v1::Progress where;
  where.set_stage(care::v1::STAGE_CALIBRATING);
  where.set_layer(3);
  where.set_layer_count(8);
  auto user = ClassifyFailure(
      absl::NotFoundError("/m/model.safetensors: no such file"), where);
  EXPECT_EQ(user.failure.reason(), care::v1::FAILURE_REASON_USER_INPUT);
  EXPECT_FALSE(user.retryable);
  EXPECT_EQ(user.failure.message(),
            "calibrating at layer 3 (layers 0-7): /m/model.safetensors: no "
            "such file");
  auto infra = ClassifyFailure(absl::UnavailableError("hub down"), {});
  EXPECT_EQ(infra.failure.reason(), care::v1::FAILURE_REASON_INFRASTRUCTURE);
  EXPECT_TRUE(infra.retryable);
  EXPECT_EQ(infra.failure.message(), "hub down");
  auto internal = ClassifyFailure(absl::InternalError("bug"), {});
  EXPECT_EQ(internal.failure.reason(), care::v1::FAILURE_REASON_INTERNAL);
  EXPECT_FALSE(internal.retryable);
  for (auto code :
       {absl::StatusCode::kInvalidArgument,
        absl::StatusCode::kFailedPrecondition, absl::StatusCode::kOutOfRange,
        absl::StatusCode::kUnimplemented, absl::StatusCode::kDataLoss}) {
    EXPECT_EQ(ClassifyFailure(absl::Status(code, "x"), {}).failure.reason(),
              care::v1::FAILURE_REASON_USER_INPUT);
  }
}

}  // namespace
}  // namespace care::worker
