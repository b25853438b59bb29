// Golden tests of carectl's table and JSON output on fixed messages.
// Regenerate after an intended change with CARE_UPDATE_GOLDENS=1 and review
// the diff of tests/client/golden/.
#include "client/format.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace care::client {
namespace {

template <typename Message>
Message Parse(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message))
      << text;
  return message;
}

void ExpectGolden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(CARECTL_GOLDEN_DIR) + "/" + name;
  const char* update = std::getenv("CARE_UPDATE_GOLDENS");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path, std::ios::binary) << actual;
    return;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing golden " << path
                  << " (CARE_UPDATE_GOLDENS=1 writes it)";
  std::stringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(actual, expected.str()) << "golden " << path;
}

// A finished job with a two-layer report; one label, because protobuf's JSON
// printer emits map entries in hash order.
constexpr char kSucceededJob[] = R"pb(
  id: "job-01HZX3J7Q6N8W2Y4T5R7P9K1M3"
  spec {
    model_uri: "/models/stories260K-hf"
    output_uri: "/outputs/stories260K-mla"
    kv_budget { kv_save_fraction: 0.5 }
    method: METHOD_CARE
    rank_allocation: RANK_ALLOCATION_ADJUSTED
    calibration {
      dataset_uri: "/data/tinystories/train.txt"
      samples: 64
      sequence_length: 32
      seed: 7
      text_field: "text"
    }
    evaluation {
      dataset_uri: "/data/tinystories/valid.txt"
      window_length: 256
      max_windows: 8
      text_field: "text"
    }
    damping: 0.01
    labels { key: "team" value: "research" }
    priority: 5
    request_id: "nightly-42"
    device: DEVICE_CPU
    max_attempts: 3
  }
  state: JOB_STATE_SUCCEEDED
  progress { stage: STAGE_WRITING fraction: 1 layer: 4 layer_count: 5 }
  attempt: 2
  create_time { seconds: 1795860000 }
  start_time { seconds: 1795860005 }
  update_time { seconds: 1795860190 }
  end_time { seconds: 1795860190 }
  attempts {
    attempt: 1
    worker_id: "worker-b:77"
    device: DEVICE_CPU
    device_name: "cpu"
    lease_time { seconds: 1795860005 }
  }
  attempts {
    attempt: 2
    worker_id: "worker-a:1234"
    device: DEVICE_CPU
    device_name: "cpu"
    lease_time { seconds: 1795860100 }
  }
  report {
    original { ppl: 3.83212 mean_nll: 1.34342 predictions: 2040 }
    converted { ppl: 3.95105 mean_nll: 1.37398 predictions: 2040 }
    kv_width_before: 640
    kv_width_after: 320
    layers {
      layer: 0
      rank_k: 16
      rank_v: 16
      k_relative_error: 0.0123
      v_relative_error: 0.0456
      k_retained_energy: 0.9876
      v_retained_energy: 0.9543
    }
    layers {
      layer: 1
      rank_k: 12
      rank_v: 20
      k_relative_error: 0.00789
      v_relative_error: 0.1
      k_retained_energy: 0.99
      v_retained_energy: 0.9
    }
    timings { stage: STAGE_LOADING seconds: 0.125 }
    timings { stage: STAGE_CALIBRATING seconds: 12.5 }
    method: METHOD_CARE
    rank_allocation: RANK_ALLOCATION_ADJUSTED
    damping: 0.01
    output_uri: "/outputs/stories260K-mla"
  }
)pb";

constexpr char kRunningJob[] = R"pb(
  id: "job-01HZX3K0000000000000000002"
  spec {
    model_uri: "hf://org/model@main"
    output_uri: "/outputs/b"
    kv_budget { rank_per_matrix: 32 }
    method: METHOD_SVD
    labels { key: "team" value: "infra" }
    labels { key: "env" value: "ci" }
    max_attempts: 3
  }
  state: JOB_STATE_RUNNING
  progress { stage: STAGE_CALIBRATING fraction: 0.4375 layer: 2 layer_count: 8 }
  attempt: 1
  worker_id: "worker-a:1234"
  create_time { seconds: 1795860100 }
  start_time { seconds: 1795860101 }
  update_time { seconds: 1795860150 }
  attempts {
    attempt: 1
    worker_id: "worker-a:1234"
    device: DEVICE_CUDA
    device_name: "cuda:0 (NVIDIA H100 80GB HBM3)"
    lease_time { seconds: 1795860101 }
  }
)pb";

// Waiting for a device no connected worker offers.
constexpr char kQueuedJob[] = R"pb(
  id: "job-01HZX3K0000000000000000004"
  spec {
    model_uri: "/models/m"
    output_uri: "/outputs/d"
    kv_budget { kv_save_fraction: 0.5 }
    method: METHOD_SVD
    device: DEVICE_CUDA
    max_attempts: 3
  }
  state: JOB_STATE_QUEUED
  create_time { seconds: 1795860300 }
  update_time { seconds: 1795860300 }
  queue_reason: "waiting for a cuda worker: none seen in the last 1m"
)pb";

constexpr char kFailedJob[] = R"pb(
  id: "job-01HZX3K0000000000000000003"
  spec {
    model_uri: "/models/broken"
    output_uri: "/outputs/c"
    kv_budget { kv_save_fraction: 0.75 }
    calibration { dataset_uri: "/data/c.txt" samples: 256 sequence_length: 32 }
    max_attempts: 1
  }
  state: JOB_STATE_FAILED
  attempt: 1
  create_time { seconds: 1795860200 }
  start_time { seconds: 1795860201 }
  end_time { seconds: 1795860202 }
  failure {
    reason: FAILURE_REASON_USER_INPUT
    message: "/models/broken/model.safetensors: tensor model.layers.0.self_attn.k_proj.weight: header truncated"
  }
)pb";

TEST(FormatGolden, SucceededJobTable) {
  ExpectGolden("job_succeeded.txt",
               FormatJobTable(Parse<care::v1::Job>(kSucceededJob)));
}

TEST(FormatGolden, SucceededJobJson) {
  ExpectGolden("job_succeeded.json",
               ToJson(Parse<care::v1::Job>(kSucceededJob), true) + "\n");
}

// The same job with two evaluation tasks and rolling perplexity: the spec
// line, the rolling line and the accuracy table before/after.
TEST(FormatGolden, SucceededJobWithTasksTable) {
  care::v1::Job job = Parse<care::v1::Job>(kSucceededJob);
  for (const char* name : {"arc_easy", "hellaswag"}) {
    auto* t = job.mutable_spec()->mutable_evaluation()->add_tasks();
    t->set_name(name);
    t->set_uri(std::string("/data/tasks/") + name + ".jsonl");
    t->set_format(name == std::string("arc_easy") ? "arc" : "hellaswag");
  }
  job.mutable_report()->MergeFrom(Parse<care::v1::Report>(R"pb(
    task_accuracy {
      name: "arc_easy"
      format: "arc"
      items: 2376
      original {
        acc: 0.7513
        acc_stderr: 0.0089
        acc_norm: 0.7231
        acc_norm_stderr: 0.0092
      }
      converted {
        acc: 0.7391
        acc_stderr: 0.009
        acc_norm: 0.7104
        acc_norm_stderr: 0.0093
      }
    }
    task_accuracy {
      name: "hellaswag"
      format: "hellaswag"
      items: 10042
      original {
        acc: 0.5712
        acc_stderr: 0.0049
        acc_norm: 0.7598
        acc_norm_stderr: 0.0043
      }
      converted {
        acc: 0.5533
        acc_stderr: 0.005
        acc_norm: 0.7402
        acc_norm_stderr: 0.0044
      }
    }
  )pb"));
  job.mutable_spec()->mutable_evaluation()->set_rolling_stride(128);
  job.mutable_spec()->mutable_evaluation()->set_rolling_documents("wikitext");
  job.mutable_report()->MergeFrom(Parse<care::v1::Report>(R"pb(
    rolling_original {
      documents: 62
      windows: 1528
      predictions: 765948
      token_perplexity: 75.4976
      word_perplexity: 912380.2
      byte_perplexity: 13.0192
      bits_per_byte: 3.7026
    }
    rolling_converted {
      documents: 62
      windows: 1528
      predictions: 765948
      token_perplexity: 80.11
      word_perplexity: 1.2e6
      byte_perplexity: 13.5
      bits_per_byte: 3.75
    }
  )pb"));
  ExpectGolden("job_succeeded_tasks.txt", FormatJobTable(job));
}

TEST(FormatGolden, RunningJobTable) {
  ExpectGolden("job_running.txt",
               FormatJobTable(Parse<care::v1::Job>(kRunningJob)));
}

TEST(FormatGolden, QueuedJobTableSaysWhy) {
  ExpectGolden("job_queued.txt",
               FormatJobTable(Parse<care::v1::Job>(kQueuedJob)));
}

TEST(FormatGolden, FailedJobTableAndJson) {
  auto job = Parse<care::v1::Job>(kFailedJob);
  ExpectGolden("job_failed.txt", FormatJobTable(job));
  ExpectGolden("job_failed.json", ToJson(job, true) + "\n");
}

TEST(FormatGolden, JobList) {
  care::v1::ListJobsResponse list;
  *list.add_jobs() = Parse<care::v1::Job>(kRunningJob);
  *list.add_jobs() = Parse<care::v1::Job>(kSucceededJob);
  *list.add_jobs() = Parse<care::v1::Job>(kFailedJob);
  list.set_next_page_token("opaque-token");
  ExpectGolden("list.txt", FormatJobListTable(list));
  // Labels in JSON follow map hash order: drop the two-label job there.
  list.mutable_jobs()->DeleteSubrange(0, 1);
  ExpectGolden("list.json", ToJson(list, true) + "\n");
}

TEST(FormatGolden, EmptyListStillHasHeader) {
  EXPECT_EQ(FormatJobListTable({}),
            "ID  STATE  PROGRESS  ATTEMPT  DEVICE  PRIORITY  CREATED  MODEL  "
            "LABELS\n");
}

constexpr char kEvents[] = R"pb(
  events {
    job_id: "job-1"
    sequence: 1
    time { seconds: 1795860000 }
    type: EVENT_TYPE_STATE_CHANGED
    state: JOB_STATE_QUEUED
    message: "submitted"
  }
  events {
    job_id: "job-1"
    sequence: 2
    time { seconds: 1795860005 }
    type: EVENT_TYPE_STATE_CHANGED
    state: JOB_STATE_RUNNING
    attempt: 1
    message: "leased by worker-a:1234"
  }
  events {
    job_id: "job-1"
    sequence: 3
    time { seconds: 1795860010 }
    type: EVENT_TYPE_PROGRESS
    state: JOB_STATE_RUNNING
    attempt: 1
    progress { stage: STAGE_CALIBRATING fraction: 0.25 layer: 1 layer_count: 5 }
  }
  events {
    job_id: "job-1"
    sequence: 4
    time { seconds: 1795860020 }
    type: EVENT_TYPE_LAYER_DONE
    state: JOB_STATE_RUNNING
    attempt: 1
    layer {
      layer: 0
      rank_k: 16
      rank_v: 16
      k_relative_error: 0.0123
      v_relative_error: 0.0456
    }
  }
  events {
    job_id: "job-1"
    sequence: 5
    time { seconds: 1795860100 }
    type: EVENT_TYPE_LEASE_EXPIRED
    state: JOB_STATE_QUEUED
    attempt: 1
    message: "lease of worker-a:1234 expired"
  }
  next_after_sequence: 0
)pb";

TEST(FormatGolden, EventsTableJsonAndLines) {
  auto events = Parse<care::v1::ListJobEventsResponse>(kEvents);
  ExpectGolden("events.txt", FormatEventsTable(events));
  ExpectGolden("events.json", ToJson(events, true) + "\n");
  std::string lines;
  for (const auto& e : events.events()) lines += FormatEventLine(e) + "\n";
  ExpectGolden("watch_plain.txt", lines);
}

TEST(FormatGolden, OutcomeLines) {
  std::string lines =
      FormatOutcomeLine(Parse<care::v1::Job>(kSucceededJob)) + "\n" +
      FormatOutcomeLine(Parse<care::v1::Job>(kFailedJob)) + "\n";
  ExpectGolden("outcome.txt", lines);
}

TEST(Format, HumanDuration) {
  EXPECT_EQ(HumanDuration(absl::Seconds(0)), "0s");
  EXPECT_EQ(HumanDuration(absl::Seconds(59.9)), "59s");
  EXPECT_EQ(HumanDuration(absl::Seconds(185)), "3m05s");
  EXPECT_EQ(HumanDuration(absl::Seconds(3720)), "1h02m");
  EXPECT_EQ(HumanDuration(absl::Hours(51)), "2d03h");
  EXPECT_EQ(HumanDuration(absl::Seconds(-5)), "0s");
}

TEST(Format, EtaIsLinearInFraction) {
  absl::Time t0 = absl::FromUnixSeconds(1000);
  // 0.1 -> 0.3 in 20 s: 0.1 per 10 s, 0.7 left -> 70 s.
  auto eta = EstimateRemaining(0.1, t0, 0.3, t0 + absl::Seconds(20));
  ASSERT_TRUE(eta.has_value());
  EXPECT_EQ(absl::ToInt64Seconds(*eta), 70);
  EXPECT_FALSE(EstimateRemaining(0.3, t0, 0.3, t0 + absl::Seconds(5)));
  EXPECT_FALSE(EstimateRemaining(0.1, t0, 0.3, t0));
}

TEST(Format, ProgressBar) {
  care::v1::Progress p;
  p.set_stage(care::v1::STAGE_DECOMPOSING);
  p.set_fraction(0.5);
  p.set_layer(3);
  p.set_layer_count(8);
  EXPECT_EQ(FormatProgressBar(p, absl::Seconds(80), 10),
            "[#####.....]  50.0%  decomposing  layer 4/8  ETA 1m20s");
  p.set_fraction(1.5);  // Clamped: a bad server value cannot overflow the bar.
  EXPECT_EQ(FormatProgressBar(p, std::nullopt, 4),
            "[####] 100.0%  decomposing  layer 4/8  ETA --");
}

TEST(Format, OutputFormat) {
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("table"), OutputFormat::kTable);
  auto bad = ParseOutputFormat("yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--output"), std::string::npos);
}

}  // namespace
}  // namespace care::client
