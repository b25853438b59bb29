// The contract between the worker service and its pipeline process
// (`care-worker serve --run-job`, docs/worker.md): the job's spec as the
// pipeline's options (JSON on the child's stdin), and the pipeline's JSON
// report back into the API's Report. JSON, not protobuf, because the
// pipeline process must not load libprotobuf (see subprocess_runner.h).
#ifndef CARE_WORKER_SERVICE_JOB_OPTIONS_H_
#define CARE_WORKER_SERVICE_JOB_OPTIONS_H_

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "care/v1/job.pb.h"

namespace care::worker {

// {"model", "output_dir", "overwrite", "budget": {"kv_save"| "rank"},
//  "method", "allocation", "damping", "sequential", "calib_data",
//  "calib_text_field", "calib_samples", "calib_seq_len", "seed",
//  "eval_data", "eval_text_field", "eval_prepend_bos", "eval_seq_len",
//  "eval_windows", "output_dtype" ("source"|"f32"|"f16"|"bf16"),
//  "threads", "eval_tasks": [{"name", "path", "format", "limit"}],
//  "eval_rolling_stride", "eval_rolling_documents", "heldout_figures"}: the
// fields of care::convert::ConvertOptions. Every JobSpec
// field the pipeline reads is mapped; InvalidArgument naming the field for
// a URI that is not local or an enum value this build does not know.
absl::StatusOr<nlohmann::json> PipelineOptionsFromJob(const care::v1::Job& job,
                                                      int threads);

// care::convert::ReportToJson's document -> Report; InvalidArgument when a
// required field is missing or mistyped.
absl::StatusOr<care::v1::Report> ReportFromPipelineJson(
    const nlohmann::json& report, const care::v1::JobSpec& spec);

// "load" -> STAGE_LOADING ... ("allocate" counts as decomposing).
care::v1::Stage StageFromPipeline(const std::string& stage);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_JOB_OPTIONS_H_
