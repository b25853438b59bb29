// One job through the whole service with the fields the worker used to
// refuse: carectl submits a YAML spec (-f) with calibration.sequential,
// calibration.text_field, evaluation.prepend_bos and output_dtype BF16;
// care-server leases it to `care-worker serve`; the job SUCCEEDS, the
// output is a BF16 checkpoint, and the numbers equal an offline
// `care-worker convert` with the same flags.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/io/checkpoint.h"
#include "gmock/gmock.h"
#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

class SpecFieldsServiceTest : public ClusterTest {};

TEST_F(SpecFieldsServiceTest, SequentialBosBf16JobFromYamlSucceeds) {
  // Calibration documents as JSONL under "story", in the server's data root.
  const std::string calib = dir_ + "/data/calib.jsonl";
  std::filesystem::create_directories(dir_ + "/data");
  {
    std::ifstream in(fixtures_ + "/tinystories/tinystories_val_head.txt");
    std::ofstream out(calib);
    int docs = 0;
    for (std::string line; docs < 300 && std::getline(in, line);) {
      if (line.empty()) continue;
      out << nlohmann::json{{"story", line}}.dump() << "\n";
      ++docs;
    }
  }
  const std::string output = dir_ + "/outputs/seq-bos-bf16";
  const std::string spec = dir_ + "/job.yaml";
  std::ofstream(spec) << absl::StrCat("model_uri: ", model_, "\n",
                                      "output_uri: ", output, "\n",
                                      "kv_budget: {kv_save_fraction: 0.5}\n"
                                      "calibration:\n"
                                      "  dataset_uri: ",
                                      calib, "\n",
                                      "  text_field: story\n"
                                      "  samples: 32\n"
                                      "  sequence_length: 32\n"
                                      "  sequential: true\n"
                                      "evaluation:\n"
                                      "  dataset_uri: ",
                                      tokens_, "\n",
                                      "  window_length: 256\n"
                                      "  max_windows: 8\n"
                                      "  prepend_bos: true\n"
                                      "output_dtype: OUTPUT_DTYPE_BF16\n");

  StartWorker("w1", {BinaryPath("worker/cli/care-worker"), "serve",
                     "--work-dir", dir_ + "/work"});
  CommandResult wait = Carectl({"submit", "-f", spec, "--wait", "--plain"});
  ASSERT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  EXPECT_THAT(wait.out, HasSubstr("SUCCEEDED"));
  const std::string id = wait.out.substr(10, wait.out.find('\n') - 10);
  const care::v1::Job job = Get(id);
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(job.spec().calibration().sequential());
  EXPECT_TRUE(job.spec().evaluation().prepend_bos());
  // stories260K_reference/SOURCE.md, P2 with 8 windows: 2,040 predictions,
  // mean NLL 1.471694 (float64; a float32 forward within ~1e-4).
  EXPECT_EQ(job.report().original().predictions(), 2040);
  EXPECT_NEAR(job.report().original().mean_nll(), 1.471694, 1e-4);

  auto checkpoint = care::io::Checkpoint::Open(output);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  for (const std::string& name : (*checkpoint)->Names()) {
    EXPECT_EQ(*(*checkpoint)->TensorDType(name), care::io::DType::kBF16)
        << name;
  }
  const nlohmann::json config = nlohmann::json::parse(
      ReadFileOrEmpty(output + "/config.json"), nullptr, false);
  EXPECT_EQ(config.value("torch_dtype", ""), "bfloat16");
  const nlohmann::json written = nlohmann::json::parse(
      ReadFileOrEmpty(output + "/care_report.json"), nullptr, false);
  EXPECT_EQ(written.value("sequential", false), true);

  // The same conversion offline, one thread like the worker: same numbers.
  const std::string offline = dir_ + "/offline";
  CommandResult r = RunCommand({BinaryPath("worker/cli/care-worker"),
                                "convert",
                                "--model",
                                model_,
                                "--out",
                                offline,
                                "--kv-save",
                                "0.5",
                                "--calib",
                                calib,
                                "--calib-text-field",
                                "story",
                                "--calib-samples",
                                "32",
                                "--calib-seq-len",
                                "32",
                                "--sequential",
                                "--eval",
                                tokens_,
                                "--eval-seq-len",
                                "256",
                                "--eval-windows",
                                "8",
                                "--eval-bos",
                                "--dtype",
                                "bf16",
                                "--threads",
                                "1",
                                "--report",
                                offline + ".json",
                                "--quiet"},
                               logs_, absl::Seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json report =
      nlohmann::json::parse(ReadFileOrEmpty(offline + ".json"), nullptr, false);
  ASSERT_TRUE(report.is_object());
  // Equal up to the report's printing round-off.
  EXPECT_NEAR(job.report().original().ppl(),
              report["original"]["ppl"].get<double>(), 1e-9);
  EXPECT_NEAR(job.report().converted().ppl(),
              report["converted"]["ppl"].get<double>(), 1e-9);
}

// evaluation.heldout_figures: a uniform job runs the held-out windows only
// when asked (carectl --heldout); the factors and perplexities are the same
// either way, and only the asked job reports held-out figures.
TEST_F(SpecFieldsServiceTest, HeldoutWindowsRunOnlyWhenTheSpecAsks) {
  StartWorker("w1", {BinaryPath("worker/cli/care-worker"), "serve",
                     "--work-dir", dir_ + "/work"});
  auto submit = [&](const std::string& name, bool heldout) {
    std::vector<std::string> args = {"submit",
                                     "--wait",
                                     "--plain",
                                     "--model",
                                     model_,
                                     "--out",
                                     dir_ + "/outputs/" + name,
                                     "--kv-save",
                                     "0.5",
                                     "--allocation",
                                     "uniform",
                                     "--calib",
                                     tokens_,
                                     "--calib-samples",
                                     "64",
                                     "--calib-seq-len",
                                     "32",
                                     "--eval",
                                     tokens_,
                                     "--eval-seq-len",
                                     "128",
                                     "--eval-windows",
                                     "4"};
    if (heldout) args.push_back("--heldout");
    CommandResult wait = Carectl(args);
    EXPECT_EQ(wait.exit_code, 0) << wait.out << wait.err;
    return Get(wait.out.substr(10, wait.out.find('\n') - 10));
  };
  const care::v1::Job skipped = submit("skipped", false);
  const care::v1::Job asked = submit("asked", true);
  ASSERT_EQ(skipped.state(), care::v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(asked.state(), care::v1::JOB_STATE_SUCCEEDED);
  EXPECT_FALSE(skipped.spec().evaluation().heldout_figures());
  EXPECT_TRUE(asked.spec().evaluation().heldout_figures());

  // Same windows, same factors: the same numbers, bit for bit.
  EXPECT_EQ(skipped.report().converted().mean_nll(),
            asked.report().converted().mean_nll());
  EXPECT_EQ(skipped.report().original().mean_nll(),
            asked.report().original().mean_nll());
  ASSERT_EQ(skipped.report().layers_size(), asked.report().layers_size());
  ASSERT_GT(asked.report().layers_size(), 0);
  for (int l = 0; l < asked.report().layers_size(); ++l) {
    EXPECT_EQ(skipped.report().layers(l).k_retained_energy(),
              asked.report().layers(l).k_retained_energy());
    EXPECT_EQ(skipped.report().layers(l).k_relative_error(), 0) << l;
    EXPECT_GT(asked.report().layers(l).k_relative_error(), 0) << l;
    EXPECT_GT(asked.report().layers(l).v_relative_error(), 0) << l;
  }
  auto calibration = [&](const std::string& name) {
    return nlohmann::json::parse(
        ReadFileOrEmpty(dir_ + "/outputs/" + name + "/care_report.json"),
        nullptr, false)["calibration"];
  };
  const nlohmann::json without = calibration("skipped");
  const nlohmann::json with = calibration("asked");
  EXPECT_EQ(without.value("heldout_run", true), false);
  EXPECT_FALSE(without.contains("heldout_nll_converted"));
  EXPECT_EQ(with.value("heldout_run", false), true);
  EXPECT_EQ(with.value("heldout_reason", ""), "asked");
  EXPECT_GT(with.value("heldout_nll_converted", 0.0), 0);
}

}  // namespace
}  // namespace care::testing
