#include "proto/api/spec_validation.h"

#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace care::api {
namespace {

using care::v1::JobSpec;
using ::testing::HasSubstr;
using ::testing::StartsWith;

JobSpec ValidSpec() {
  JobSpec spec;
  spec.set_model_uri("/models/llama");
  spec.set_output_uri("file:///out/llama-mla");
  spec.mutable_kv_budget()->set_kv_save_fraction(0.5);
  spec.mutable_calibration()->set_dataset_uri("/data/calib.jsonl");
  return spec;
}

void SetDeepseekV3(JobSpec& s) {
  s.set_output_layout(care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
}

struct Case {
  std::string name;
  std::function<void(JobSpec&)> mutate;
  std::string field;  // Expected message prefix; empty means valid.
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class SpecValidationTest : public ::testing::TestWithParam<Case> {};

TEST_P(SpecValidationTest, ReportsFieldOrAccepts) {
  JobSpec spec = ValidSpec();
  GetParam().mutate(spec);
  absl::Status status = ValidateJobSpec(spec);
  if (GetParam().field.empty()) {
    EXPECT_TRUE(status.ok()) << status;
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()),
                StartsWith(GetParam().field + ":"));
  }
}

const Case kCases[] = {
    {"valid", [](JobSpec&) {}, ""},
    // model_uri
    {"model_missing", [](JobSpec& s) { s.clear_model_uri(); }, "model_uri"},
    {"model_relative", [](JobSpec& s) { s.set_model_uri("models/x"); },
     "model_uri"},
    {"model_dotdot", [](JobSpec& s) { s.set_model_uri("/a/../etc"); },
     "model_uri"},
    {"model_bad_scheme", [](JobSpec& s) { s.set_model_uri("s3://b/k"); },
     "model_uri"},
    {"model_hf", [](JobSpec& s) { s.set_model_uri("hf://Qwen/Qwen3-4B@main"); },
     ""},
    {"model_hf_bad", [](JobSpec& s) { s.set_model_uri("hf://a/b/c"); },
     "model_uri"},
    {"model_too_long",
     [](JobSpec& s) { s.set_model_uri("/" + std::string(5000, 'a')); },
     "model_uri"},
    // output_uri
    {"output_missing", [](JobSpec& s) { s.clear_output_uri(); }, "output_uri"},
    {"output_hf", [](JobSpec& s) { s.set_output_uri("hf://org/name"); },
     "output_uri"},
    // kv_budget
    {"budget_missing", [](JobSpec& s) { s.clear_kv_budget(); }, "kv_budget"},
    {"budget_unset", [](JobSpec& s) { s.mutable_kv_budget()->clear_budget(); },
     "kv_budget"},
    {"budget_fraction_one",
     [](JobSpec& s) { s.mutable_kv_budget()->set_kv_save_fraction(1.0); },
     "kv_budget.kv_save_fraction"},
    {"budget_fraction_negative",
     [](JobSpec& s) { s.mutable_kv_budget()->set_kv_save_fraction(-0.1); },
     "kv_budget.kv_save_fraction"},
    {"budget_fraction_nan",
     [](JobSpec& s) {
       s.mutable_kv_budget()->set_kv_save_fraction(std::nan(""));
     },
     "kv_budget.kv_save_fraction"},
    {"budget_fraction_zero",
     [](JobSpec& s) { s.mutable_kv_budget()->set_kv_save_fraction(0.0); }, ""},
    {"budget_rank_zero",
     [](JobSpec& s) { s.mutable_kv_budget()->set_rank_per_matrix(0); },
     "kv_budget.rank_per_matrix"},
    {"budget_rank_ok",
     [](JobSpec& s) { s.mutable_kv_budget()->set_rank_per_matrix(256); }, ""},
    // enums
    {"method_unknown",
     [](JobSpec& s) { s.set_method(static_cast<care::v1::Method>(99)); },
     "method"},
    {"allocation_unknown",
     [](JobSpec& s) {
       s.set_rank_allocation(static_cast<care::v1::RankAllocation>(42));
     },
     "rank_allocation"},
    {"dtype_unknown",
     [](JobSpec& s) {
       s.set_output_dtype(static_cast<care::v1::OutputDtype>(7));
     },
     "output_dtype"},
    {"device_unknown",
     [](JobSpec& s) { s.set_device(static_cast<care::v1::Device>(9)); },
     "device"},
    {"device_negative",
     [](JobSpec& s) { s.set_device(static_cast<care::v1::Device>(-1)); },
     "device"},
    {"device_unset", [](JobSpec& s) { s.clear_device(); }, ""},
    {"device_any", [](JobSpec& s) { s.set_device(care::v1::DEVICE_ANY); }, ""},
    {"device_cpu", [](JobSpec& s) { s.set_device(care::v1::DEVICE_CPU); }, ""},
    {"device_cuda", [](JobSpec& s) { s.set_device(care::v1::DEVICE_CUDA); },
     ""},
    // calibration
    {"calib_missing", [](JobSpec& s) { s.clear_calibration(); },
     "calibration.dataset_uri"},
    {"calib_missing_svd_ok",
     [](JobSpec& s) {
       s.clear_calibration();
       s.set_method(care::v1::METHOD_SVD);
     },
     ""},
    {"calib_missing_svd_auto",
     [](JobSpec& s) {
       s.clear_calibration();
       s.set_method(care::v1::METHOD_SVD);
       s.set_rank_allocation(care::v1::RANK_ALLOCATION_AUTO);
     },
     "calibration.dataset_uri"},
    {"calib_hub_rejected",
     [](JobSpec& s) {
       s.mutable_calibration()->set_dataset_uri("hf://org/data");
     },
     "calibration.dataset_uri"},
    {"calib_samples_negative",
     [](JobSpec& s) { s.mutable_calibration()->set_samples(-1); },
     "calibration.samples"},
    {"calib_samples_huge",
     [](JobSpec& s) { s.mutable_calibration()->set_samples(2 << 20); },
     "calibration.samples"},
    {"calib_seq_one",
     [](JobSpec& s) { s.mutable_calibration()->set_sequence_length(1); },
     "calibration.sequence_length"},
    {"calib_text_field_long",
     [](JobSpec& s) {
       s.mutable_calibration()->set_text_field(std::string(200, 'x'));
     },
     "calibration.text_field"},
    // evaluation
    {"eval_fields_without_uri",
     [](JobSpec& s) { s.mutable_evaluation()->set_window_length(512); },
     "evaluation.dataset_uri"},
    {"eval_window_one",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
       s.mutable_evaluation()->set_window_length(1);
     },
     "evaluation.window_length"},
    {"eval_max_windows_negative",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
       s.mutable_evaluation()->set_max_windows(-3);
     },
     "evaluation.max_windows"},
    {"eval_relative_uri",
     [](JobSpec& s) { s.mutable_evaluation()->set_dataset_uri("eval.txt"); },
     "evaluation.dataset_uri"},
    // evaluation.rolling_stride / rolling_documents
    {"rolling_valid",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/wiki.test.raw");
       s.mutable_evaluation()->set_window_length(1024);
       s.mutable_evaluation()->set_rolling_stride(512);
       s.mutable_evaluation()->set_rolling_documents("wikitext");
     },
     ""},
    {"rolling_without_uri",
     [](JobSpec& s) { s.mutable_evaluation()->set_rolling_stride(8); },
     "evaluation.dataset_uri"},
    {"rolling_stride_above_window",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
       s.mutable_evaluation()->set_window_length(256);
       s.mutable_evaluation()->set_rolling_stride(257);
     },
     "evaluation.rolling_stride"},
    {"rolling_stride_negative",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
       s.mutable_evaluation()->set_rolling_stride(-1);
     },
     "evaluation.rolling_stride"},
    {"rolling_documents_unknown",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
       s.mutable_evaluation()->set_rolling_stride(64);
       s.mutable_evaluation()->set_rolling_documents("pages");
     },
     "evaluation.rolling_documents"},
    // evaluation.heldout_figures: the held-out windows are calibration data.
    {"heldout_figures_valid",
     [](JobSpec& s) { s.mutable_evaluation()->set_heldout_figures(true); }, ""},
    {"heldout_figures_without_calibration",
     [](JobSpec& s) {
       s.clear_calibration();
       s.set_method(care::v1::METHOD_SVD);
       s.mutable_evaluation()->set_heldout_figures(true);
     },
     "evaluation.heldout_figures"},
    // evaluation.tasks
    {"tasks_valid",
     [](JobSpec& s) {
       auto* t = s.mutable_evaluation()->add_tasks();
       t->set_uri("/data/arc_easy.jsonl");
       t->set_format("arc");
       t->set_limit(500);
       s.mutable_evaluation()->add_tasks()->set_uri("file:///data/piqa.jsonl");
     },
     ""},
    {"tasks_uri_missing",
     [](JobSpec& s) { s.mutable_evaluation()->add_tasks()->set_name("x"); },
     "evaluation.tasks[0].uri"},
    {"tasks_uri_relative",
     [](JobSpec& s) {
       s.mutable_evaluation()->add_tasks()->set_uri("/data/a.jsonl");
       s.mutable_evaluation()->add_tasks()->set_uri("tasks/b.jsonl");
     },
     "evaluation.tasks[1].uri"},
    {"tasks_uri_hub",
     [](JobSpec& s) {
       s.mutable_evaluation()->add_tasks()->set_uri("hf://allenai/ai2_arc");
     },
     "evaluation.tasks[0].uri"},
    {"tasks_format_unknown",
     [](JobSpec& s) {
       auto* t = s.mutable_evaluation()->add_tasks();
       t->set_uri("/data/mmlu.jsonl");
       t->set_format("mmlu");
     },
     "evaluation.tasks[0].format"},
    {"tasks_limit_negative",
     [](JobSpec& s) {
       auto* t = s.mutable_evaluation()->add_tasks();
       t->set_uri("/data/a.jsonl");
       t->set_limit(-1);
     },
     "evaluation.tasks[0].limit"},
    {"tasks_name_bad",
     [](JobSpec& s) {
       auto* t = s.mutable_evaluation()->add_tasks();
       t->set_uri("/data/a.jsonl");
       t->set_name("arc easy");
     },
     "evaluation.tasks[0].name"},
    {"tasks_name_duplicate_stem",
     [](JobSpec& s) {
       s.mutable_evaluation()->add_tasks()->set_uri("/data/v1/arc.jsonl");
       s.mutable_evaluation()->add_tasks()->set_uri("/data/v2/arc.jsonl");
     },
     "evaluation.tasks[1].name"},
    {"tasks_too_many",
     [](JobSpec& s) {
       for (int i = 0; i < 17; ++i) {
         s.mutable_evaluation()->add_tasks()->set_uri(
             "/data/t" + std::to_string(i) + ".jsonl");
       }
     },
     "evaluation.tasks"},
    {"eval_text_field_long",
     [](JobSpec& s) {
       s.mutable_evaluation()->set_dataset_uri("/data/eval.jsonl");
       s.mutable_evaluation()->set_text_field(std::string(129, 'y'));
     },
     "evaluation.text_field"},
    // damping
    {"damping_zero", [](JobSpec& s) { s.set_damping(0.0); }, ""},
    {"damping_negative", [](JobSpec& s) { s.set_damping(-0.01); }, "damping"},
    {"damping_above_one", [](JobSpec& s) { s.set_damping(1.5); }, "damping"},
    {"damping_inf", [](JobSpec& s) { s.set_damping(INFINITY); }, "damping"},
    // labels
    {"labels_ok",
     [](JobSpec& s) { (*s.mutable_labels())["team.ml-ops_1"] = "a"; }, ""},
    {"labels_uppercase",
     [](JobSpec& s) { (*s.mutable_labels())["Team"] = "a"; }, "labels[Team]"},
    {"labels_trailing_dash",
     [](JobSpec& s) { (*s.mutable_labels())["team-"] = "a"; }, "labels[team-]"},
    {"labels_value_long",
     [](JobSpec& s) { (*s.mutable_labels())["k"] = std::string(257, 'v'); },
     "labels[k]"},
    {"labels_too_many",
     [](JobSpec& s) {
       for (int i = 0; i < 33; ++i) {
         (*s.mutable_labels())["k" + std::to_string(i)] = "v";
       }
     },
     "labels"},
    // priority, request id, attempts
    {"priority_high", [](JobSpec& s) { s.set_priority(1001); }, "priority"},
    {"priority_low", [](JobSpec& s) { s.set_priority(-1001); }, "priority"},
    {"request_id_space", [](JobSpec& s) { s.set_request_id("a b"); },
     "request_id"},
    {"request_id_long",
     [](JobSpec& s) { s.set_request_id(std::string(129, 'r')); }, "request_id"},
    {"request_id_ok", [](JobSpec& s) { s.set_request_id("ci-run-42"); }, ""},
    {"max_attempts_high", [](JobSpec& s) { s.set_max_attempts(21); },
     "max_attempts"},
    {"max_attempts_negative", [](JobSpec& s) { s.set_max_attempts(-1); },
     "max_attempts"},
    // DeepSeek-V3 output layout (issue 17).
    {"method_pca", [](JobSpec& s) { s.set_method(care::v1::METHOD_PCA); }, ""},
    {"layout_unknown",
     [](JobSpec& s) {
       s.set_output_layout(static_cast<care::v1::OutputLayout>(9));
     },
     "output_layout"},
    {"layout_deepseek_v3", [](JobSpec& s) { SetDeepseekV3(s); }, ""},
    {"rope_dim_latent", [](JobSpec& s) { s.set_rope_dim(8); }, "rope_dim"},
    {"rope_dim_odd",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_rope_dim(7);
     },
     "rope_dim"},
    {"rope_dim_negative",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_rope_dim(-2);
     },
     "rope_dim"},
    {"rope_dim_ok",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_rope_dim(64);
     },
     ""},
    {"freqfold_latent", [](JobSpec& s) { s.set_freqfold(2); }, "freqfold"},
    {"freqfold_huge",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_freqfold(65);
     },
     "freqfold"},
    {"freqfold_ok",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_freqfold(4);
     },
     ""},
    {"kv_lora_rank_latent", [](JobSpec& s) { s.set_kv_lora_rank(512); },
     "kv_lora_rank"},
    {"kv_lora_rank_with_budget",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_kv_lora_rank(512);
     },
     "kv_budget"},
    {"kv_lora_rank_instead_of_budget",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.clear_kv_budget();
       s.set_kv_lora_rank(512);
     },
     ""},
    {"kv_lora_rank_negative",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.clear_kv_budget();
       s.set_kv_lora_rank(-1);
     },
     "kv_lora_rank"},
    {"no_kv_balance_latent", [](JobSpec& s) { s.set_no_kv_balance(true); },
     "no_kv_balance"},
    {"deepseek_v3_f16",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_output_dtype(care::v1::OUTPUT_DTYPE_F16);
     },
     "output_dtype"},
    {"deepseek_v3_bf16",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_output_dtype(care::v1::OUTPUT_DTYPE_BF16);
     },
     ""},
    {"deepseek_v3_svd_needs_calibration",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.set_method(care::v1::METHOD_SVD);
       s.clear_calibration();
     },
     "calibration.dataset_uri"},
    // healing (issue 24): DeepSeek-V3 layout only
    {"healing_local_dsv3",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
       s.mutable_healing()->set_inputs(care::v1::HEALING_INPUTS_HEALED);
       s.mutable_healing()->set_dataset_uri("/data/heal.txt");
       s.mutable_healing()->set_tokens(65536);
       s.mutable_healing()->set_steps(100);
     },
     ""},
    {"healing_local_latent",
     [](JobSpec& s) {
       s.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
     },
     "healing.mode"},
    {"healing_fields_without_mode",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_steps(10);
     },
     "healing"},
    {"healing_bad_mode",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_mode(static_cast<care::v1::HealingMode>(9));
     },
     "healing.mode"},
    {"healing_negative_tokens",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
       s.mutable_healing()->set_tokens(-1);
     },
     "healing.tokens"},
    {"healing_steps_range",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
       s.mutable_healing()->set_steps(100001);
     },
     "healing.steps"},
    {"healing_relative_data",
     [](JobSpec& s) {
       SetDeepseekV3(s);
       s.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
       s.mutable_healing()->set_dataset_uri("heal.txt");
     },
     "healing.dataset_uri"},
};

INSTANTIATE_TEST_SUITE_P(Rules, SpecValidationTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.name; });

TEST(ApplyJobSpecDefaultsTest, FillsUnsetFieldsOnly) {
  JobSpec spec = ValidSpec();
  spec.mutable_evaluation()->set_dataset_uri("/data/eval.txt");
  spec.mutable_evaluation()->set_window_length(256);
  ApplyJobSpecDefaults(spec);
  EXPECT_EQ(spec.method(), care::v1::METHOD_CARE);
  EXPECT_EQ(spec.rank_allocation(), care::v1::RANK_ALLOCATION_UNIFORM);
  EXPECT_EQ(spec.device(), care::v1::DEVICE_ANY);
  EXPECT_EQ(spec.output_layout(), care::v1::OUTPUT_LAYOUT_LATENT);
  EXPECT_DOUBLE_EQ(spec.damping(), kDefaultDamping);
  EXPECT_EQ(spec.max_attempts(), kDefaultMaxAttempts);
  EXPECT_EQ(spec.calibration().samples(), kDefaultCalibrationSamples);
  EXPECT_EQ(spec.calibration().sequence_length(),
            kDefaultCalibrationSequenceLength);
  EXPECT_EQ(spec.calibration().text_field(), "text");
  EXPECT_EQ(spec.evaluation().window_length(), 256);
  EXPECT_TRUE(ValidateJobSpec(spec).ok());

  JobSpec again = spec;
  ApplyJobSpecDefaults(again);
  EXPECT_EQ(again.SerializeAsString(), spec.SerializeAsString());
}

TEST(ApplyJobSpecDefaultsTest, HealingDefaultsOnlyWithLocalHealing) {
  JobSpec spec = ValidSpec();
  spec.set_output_layout(care::v1::OUTPUT_LAYOUT_DEEPSEEK_V3);
  JobSpec plain = spec;
  ApplyJobSpecDefaults(plain);
  EXPECT_FALSE(plain.has_healing());  // no healing asked: nothing filled
  spec.mutable_healing()->set_mode(care::v1::HEALING_MODE_LOCAL);
  spec.mutable_healing()->set_steps(7);
  ASSERT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  ApplyJobSpecDefaults(spec);
  EXPECT_EQ(spec.healing().tokens(), kDefaultHealingTokens);
  EXPECT_EQ(spec.healing().steps(), 7);  // set: kept
  EXPECT_EQ(spec.healing().inputs(), care::v1::HEALING_INPUTS_ORIGINAL);
  EXPECT_TRUE(ValidateJobSpec(spec).ok());
  spec.mutable_healing()->clear_steps();
  ApplyJobSpecDefaults(spec);
  EXPECT_EQ(spec.healing().steps(), kDefaultHealingSteps);
}

TEST(ApplyJobSpecDefaultsTest, TaskNameAndFormat) {
  JobSpec spec = ValidSpec();
  spec.mutable_evaluation()->add_tasks()->set_uri("/data/arc_easy.test.jsonl");
  auto* named = spec.mutable_evaluation()->add_tasks();
  named->set_uri("/data/x.jsonl");
  named->set_name("piqa");
  named->set_format("piqa");
  ASSERT_TRUE(ValidateJobSpec(spec).ok());
  ApplyJobSpecDefaults(spec);
  EXPECT_EQ(spec.evaluation().tasks(0).name(), "arc_easy.test");
  EXPECT_EQ(spec.evaluation().tasks(0).format(), "auto");
  EXPECT_EQ(spec.evaluation().tasks(1).name(), "piqa");
  EXPECT_EQ(spec.evaluation().tasks(1).format(), "piqa");
  EXPECT_TRUE(ValidateJobSpec(spec).ok());
}

TEST(ApplyJobSpecDefaultsTest, KeepsARequiredDevice) {
  for (care::v1::Device device :
       {care::v1::DEVICE_CPU, care::v1::DEVICE_CUDA, care::v1::DEVICE_ANY}) {
    JobSpec spec = ValidSpec();
    spec.set_device(device);
    ApplyJobSpecDefaults(spec);
    EXPECT_EQ(spec.device(), device);
  }
}

TEST(ApplyJobSpecDefaultsTest, KeepsExplicitZeroDamping) {
  JobSpec spec = ValidSpec();
  spec.set_damping(0.0);
  ApplyJobSpecDefaults(spec);
  EXPECT_EQ(spec.damping(), 0.0);
}

}  // namespace
}  // namespace care::api
