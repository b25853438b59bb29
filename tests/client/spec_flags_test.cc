// carectl submit's flag -> JobSpec mapping, --spec files and the local
// validation that runs before anything is sent.
#include "client/spec_flags.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "proto/api/spec_validation.h"
#include "support/fixtures.h"

namespace care::client {
namespace {

absl::StatusOr<care::v1::JobSpec> FromArgs(std::vector<std::string> args) {
  auto labels = ExtractRepeated(args, "label");
  if (!labels.ok()) return labels.status();
  auto flags = Flags::Parse(args, SpecBoolFlagNames());
  if (!flags.ok()) return flags.status();
  return SpecFromFlags(*flags, *labels);
}

TEST(SpecFlags, EveryFieldFromFlags) {
  auto spec = FromArgs({"--model",
                        "/m",
                        "--out=/o",
                        "--kv-save",
                        "0.5",
                        "--method",
                        "care-c",
                        "--allocation",
                        "ADJUSTED",
                        "--calib",
                        "/c.txt",
                        "--calib-samples",
                        "64",
                        "--calib-seq-len",
                        "16",
                        "--seed",
                        "18446744073709551615",
                        "--calib-text-field",
                        "body",
                        "--sequential",
                        "--eval",
                        "/e.txt",
                        "--eval-seq-len",
                        "128",
                        "--eval-windows",
                        "4",
                        "--eval-text-field",
                        "t",
                        "--eval-bos",
                        "--damping",
                        "0",
                        "--dtype",
                        "bf16",
                        "--label",
                        "team=a",
                        "--label=env=ci=x",
                        "--priority",
                        "-7",
                        "--request-id",
                        "r1",
                        "--device",
                        "cpu",
                        "--max-attempts",
                        "5"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model_uri(), "/m");
  EXPECT_EQ(spec->output_uri(), "/o");
  EXPECT_DOUBLE_EQ(spec->kv_budget().kv_save_fraction(), 0.5);
  EXPECT_EQ(spec->method(), care::v1::METHOD_CARE_C);
  EXPECT_EQ(spec->rank_allocation(), care::v1::RANK_ALLOCATION_ADJUSTED);
  EXPECT_EQ(spec->calibration().dataset_uri(), "/c.txt");
  EXPECT_EQ(spec->calibration().samples(), 64);
  EXPECT_EQ(spec->calibration().sequence_length(), 16);
  EXPECT_EQ(spec->calibration().seed(), 18446744073709551615ull);
  EXPECT_EQ(spec->calibration().text_field(), "body");
  EXPECT_TRUE(spec->calibration().sequential());
  EXPECT_EQ(spec->evaluation().dataset_uri(), "/e.txt");
  EXPECT_EQ(spec->evaluation().window_length(), 128);
  EXPECT_EQ(spec->evaluation().max_windows(), 4);
  EXPECT_EQ(spec->evaluation().text_field(), "t");
  EXPECT_TRUE(spec->evaluation().prepend_bos());
  ASSERT_TRUE(spec->has_damping());  // An explicit 0 is kept, not defaulted.
  EXPECT_EQ(spec->damping(), 0.0);
  EXPECT_EQ(spec->output_dtype(), care::v1::OUTPUT_DTYPE_BF16);
  EXPECT_EQ(spec->labels().at("team"), "a");
  EXPECT_EQ(spec->labels().at("env"), "ci=x");  // Split at the first '='.
  EXPECT_EQ(spec->priority(), -7);
  EXPECT_EQ(spec->request_id(), "r1");
  EXPECT_EQ(spec->device(), care::v1::DEVICE_CPU);
  EXPECT_EQ(spec->max_attempts(), 5);
  EXPECT_TRUE(care::api::ValidateJobSpec(*spec).ok());
}

TEST(SpecFlags, RankBudgetAndRelativePaths) {
  auto spec = FromArgs({"--model", "models/x", "--out", "./out/../y", "--rank",
                        "8", "--method", "svd"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(spec->model_uri(), cwd + "/models/x");
  EXPECT_EQ(spec->output_uri(), cwd + "/y");
  EXPECT_EQ(spec->kv_budget().rank_per_matrix(), 8);
  EXPECT_FALSE(spec->has_calibration());  // Nothing given: left unset.
}

TEST(SpecFlags, ErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--kv-save", "0.5", "--rank", "4"}, "--kv-save and --rank"},
           {{"--rank", "0"}, "--rank"},
           {{"--method", "lowrank"}, "--method: expected one of care, care-c"},
           {{"--allocation", "x"}, "--allocation"},
           {{"--dtype", "f64"}, "--dtype"},
           {{"--device", "tpu"}, "--device"},
           {{"--calib-samples", "many"}, "--calib-samples"},
           {{"--priority", "99999999999"}, "--priority: out of range"},
           {{"--seed", "-1"}, "--seed"},
           {{"--damping", "x"}, "--damping"},
           {{"--label", "novalue"}, "--label: expected key=value"},
           {{"--label"}, "--label needs a value"},
       }) {
    auto spec = FromArgs(c.args);
    ASSERT_FALSE(spec.ok()) << c.args[0];
    EXPECT_NE(spec.status().message().find(c.expected), std::string::npos)
        << spec.status();
  }
}

TEST(SpecFlags, LocalValidationRejectsBeforeSending) {
  auto spec = FromArgs({"--model", "/m", "--out", "/o", "--kv-save", "0.5",
                        "--calib", "/c", "--calib-samples", "0"});
  ASSERT_TRUE(spec.ok());
  // samples 0 means "default" in proto3; an explicit out-of-range value:
  spec->mutable_calibration()->set_samples(-3);
  absl::Status status = care::api::ValidateJobSpec(*spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("calibration.samples"), std::string::npos);
}

TEST(SpecFlags, SpecFileWithFlagOverrides) {
  const std::string dir = care::testing::MakeTempDir("carectl-spec");
  const std::string path = dir + "/spec.json";
  std::ofstream(path) << R"({
    "modelUri": "/models/a",
    "output_uri": "/out/a",
    "kvBudget": {"kvSaveFraction": 0.25},
    "method": "METHOD_ASVD",
    "calibration": {"datasetUri": "/c.txt", "samples": 16},
    "labels": {"team": "x"}
  })";
  auto spec = FromArgs({"--spec", path, "--out", "/out/b", "--calib-samples",
                        "32", "--label", "env=ci"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model_uri(), "/models/a");
  EXPECT_EQ(spec->output_uri(), "/out/b");
  EXPECT_EQ(spec->method(), care::v1::METHOD_ASVD);
  EXPECT_DOUBLE_EQ(spec->kv_budget().kv_save_fraction(), 0.25);
  EXPECT_EQ(spec->calibration().dataset_uri(), "/c.txt");
  EXPECT_EQ(spec->calibration().samples(), 32);
  EXPECT_EQ(spec->labels().size(), 2u);

  std::ofstream(path) << R"({"modelUri": "/m", "bogusField": 1})";
  auto bad = ReadSpecFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  auto missing = ReadSpecFile(dir + "/nope.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.json"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(SpecFlags, HealingFlags) {
  auto spec =
      FromArgs({"--model",       "/m",          "--out",        "/o",
                "--kv-save",     "0.5",         "--calib",      "/c.txt",
                "--layout",      "deepseek-v3", "--heal",       "local",
                "--heal-inputs", "healed",      "--heal-data",  "/h.txt",
                "--heal-tokens", "65536",       "--heal-steps", "50"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->healing().mode(), care::v1::HEALING_MODE_LOCAL);
  EXPECT_EQ(spec->healing().inputs(), care::v1::HEALING_INPUTS_HEALED);
  EXPECT_EQ(spec->healing().dataset_uri(), "/h.txt");
  EXPECT_EQ(spec->healing().tokens(), 65536);
  EXPECT_EQ(spec->healing().steps(), 50);
  EXPECT_TRUE(care::api::ValidateJobSpec(*spec).ok());
  auto bad = FromArgs({"--model", "/m", "--out", "/o", "--heal", "global"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--heal"), std::string::npos);
}

TEST(SpecFlags, ExtractRepeatedLeavesOtherArgs) {
  std::vector<std::string> args = {"--label",     "a=1", "--x",     "y",
                                   "--label=b=2", "--",  "--label", "c"};
  auto labels = ExtractRepeated(args, "label");
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(*labels, (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(args, (std::vector<std::string>{"--x", "y", "--", "--label", "c"}));
}

TEST(SpecFlags, States) {
  EXPECT_EQ(*ParseState("queued"), care::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(*ParseState("JOB_STATE_FAILED"), care::v1::JOB_STATE_FAILED);
  EXPECT_EQ(*ParseState("Cancelled"), care::v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(ParseState("done").ok());
}

}  // namespace
}  // namespace care::client
