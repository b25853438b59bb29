// Task accuracy through the whole service: carectl submits a YAML spec with
// evaluation.tasks; care-server leases it to `care-worker serve`; the job's
// Report carries accuracy before/after per task, `carectl get` prints the
// task table, and the worker's /metrics has
// care_worker_task_accuracy{task, model="original"|"converted"}.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;

class EvalServiceTest : public ClusterTest {};

TEST_F(EvalServiceTest, TaskAccuracyInReportTableAndMetrics) {
  // Task files must lie in a data root of the server: copies in dir_/data.
  const std::string data = dir_ + "/data";
  std::filesystem::create_directories(data);
  for (const char* name : {"stories_which_context.jsonl", "arc.jsonl"}) {
    std::filesystem::copy_file(std::string(CARE_EVAL_TESTDATA) + "/" + name,
                               data + "/" + name);
  }
  auto write_spec = [&](const std::string& arc) {
    const std::string spec = dir_ + "/job.yaml";
    std::ofstream(spec) << absl::StrCat(
        "model_uri: ", model_, "\n", "output_uri: ", dir_,
        "/outputs/tasks\n"
        "kv_budget: {kv_save_fraction: 0.875}\n"
        "calibration:\n"
        "  dataset_uri: ",
        tokens_,
        "\n"
        "  samples: 64\n"
        "  sequence_length: 32\n"
        "evaluation:\n"
        "  tasks:\n"
        "    - {name: stories, uri: ",
        data, "/stories_which_context.jsonl, format: generic, limit: 32}\n",
        "    - uri: ", arc, "\n");
    return spec;
  };
  WorkerProcess& worker =
      StartWorker("w1", {BinaryPath("worker/cli/care-worker"), "serve",
                         "--work-dir", dir_ + "/work"});
  // A task outside every data root is refused at submit, naming it.
  CommandResult wait = Carectl(
      {"submit", "-f",
       write_spec(std::string(CARE_EVAL_TESTDATA) + "/arc.jsonl"), "--wait"});
  ASSERT_NE(wait.exit_code, 0);
  EXPECT_THAT(wait.err, HasSubstr("evaluation.tasks[1].uri"));

  wait = Carectl(
      {"submit", "-f", write_spec(data + "/arc.jsonl"), "--wait", "--plain"});
  ASSERT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  const std::string id = wait.out.substr(10, wait.out.find('\n') - 10);
  const care::v1::Job job = Get(id);
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED);
  // Defaults applied at submit: the second task is named by its stem.
  ASSERT_EQ(job.spec().evaluation().tasks_size(), 2);
  EXPECT_EQ(job.spec().evaluation().tasks(1).name(), "arc");
  EXPECT_EQ(job.spec().evaluation().tasks(1).format(), "auto");
  ASSERT_EQ(job.report().task_accuracy_size(), 2);
  const care::v1::TaskAccuracy& stories = job.report().task_accuracy(0);
  EXPECT_EQ(stories.name(), "stories");
  EXPECT_EQ(stories.format(), "generic");
  EXPECT_EQ(stories.items(), 32);
  // stories260K on the first 32 items: well above chance (0.25) before;
  // 87.5 % of the KV cache saved costs accuracy (eval_accuracy_test).
  EXPECT_GT(stories.original().acc(), 0.6);
  EXPECT_LT(stories.converted().acc(), stories.original().acc());
  EXPECT_GT(stories.original().acc_stderr(), 0);
  EXPECT_EQ(job.report().task_accuracy(1).format(), "arc");
  EXPECT_EQ(job.report().task_accuracy(1).items(), 3);

  CommandResult get = Carectl({"get", id});
  EXPECT_THAT(get.out, HasSubstr("ACC_ORIGINAL"));
  EXPECT_THAT(get.out, HasSubstr("tasks stories, arc"));
  EXPECT_THAT(get.out,
              HasSubstr(absl::StrFormat("%.4f±", stories.converted().acc())));

  const std::string metrics = ScrapeMetrics(worker.metrics);
  EXPECT_DOUBLE_EQ(
      SeriesValue(
          metrics,
          "care_worker_task_accuracy{model=\"original\",task=\"stories\"}"),
      stories.original().acc());
  EXPECT_DOUBLE_EQ(
      SeriesValue(
          metrics,
          "care_worker_task_accuracy{model=\"converted\",task=\"stories\"}"),
      stories.converted().acc());
  EXPECT_DOUBLE_EQ(
      SeriesValue(
          metrics,
          "care_worker_task_accuracy_norm{model=\"converted\",task=\"arc\"}"),
      job.report().task_accuracy(1).converted().acc_norm());
}

}  // namespace
}  // namespace care::testing
