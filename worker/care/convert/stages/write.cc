// The write stage: the converted checkpoint, in the CARE latent layout
// (docs/checkpoint-format.md), with the report so far as care_report.json
// and care_report.html (report_html.h).
// Another output layout is another writer, chosen here from ConvertOptions.
//
// The tensors depend only on the fit, so StartWrite writes them (and
// flushes them to disk) on a background thread while the evaluation stages
// run; Write then adds the report, config and auxiliary files and commits.
// That thread mostly waits on the page cache and the disk, which the
// evaluation's GEMMs do not use (docs/performance.md, "Against PyTorch").
#include <atomic>
#include <memory>
#include <thread>
#include <utility>

#include "base/status_macros.h"
#include "care/convert/report_html.h"
#include "care/convert/stages/stages.h"
#include "care/convert/write_checkpoint.h"

namespace care::convert::stage {
namespace {

WriteOptions TensorWriteOptions(const ConvertOptions& options) {
  WriteOptions wopt;
  wopt.overwrite = options.overwrite;
  wopt.dtype = options.output_dtype;
  wopt.temp_tag = options.staging_tag;
  wopt.before_commit = options.before_publish;
  return wopt;
}

class BackgroundWrite : public StartedWrite {
 public:
  BackgroundWrite(const ConvertOptions& options, const Inputs& in,
                  const std::vector<LatentLayer>& layers)
      : thread_([this, &in, &layers, out_dir = options.output_dir,
                 wopt = TensorWriteOptions(options)] {
          result_ = WriteConvertedTensors(in.weights(), in.config(), layers,
                                          out_dir, wopt, nullptr, &stop_);
          if (result_.ok()) {
            absl::Status synced = (*result_)->SyncData();
            if (!synced.ok()) result_ = synced;
          }
          if (result_.ok()) (*result_)->DropReplacedCache();
        }) {}
  // Not joined by Write (an earlier stage failed): stop between tensors;
  // the writer's destructor removes what was staged.
  ~BackgroundWrite() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  absl::StatusOr<std::unique_ptr<io::CheckpointWriter>> Join() {
    thread_.join();
    return std::move(result_);
  }

 private:
  std::atomic<bool> stop_{false};
  absl::StatusOr<std::unique_ptr<io::CheckpointWriter>> result_ =
      absl::UnknownError("the background write did not run");
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

std::unique_ptr<StartedWrite> StartWrite(
    const ConvertOptions& options, const Inputs& in,
    const std::vector<LatentLayer>& layers) {
  return std::make_unique<BackgroundWrite>(options, in, layers);
}

absl::Status Write(const ConvertOptions& options, const Inputs& in,
                   const std::vector<LatentLayer>& layers,
                   StageProgress& progress, ConversionReport* report,
                   std::unique_ptr<StartedWrite> started) {
  StageTimer timer;
  const LayerCallback after_layer = progress.Layers("write", in.num_layers());
  std::unique_ptr<io::CheckpointWriter> writer;
  if (started != nullptr) {
    CARE_ASSIGN_OR_RETURN(writer,
                          static_cast<BackgroundWrite&>(*started).Join());
    for (int64_t l = 0; l < in.num_layers(); ++l) {
      CARE_RETURN_IF_ERROR(after_layer(l));
    }
  } else {
    CARE_ASSIGN_OR_RETURN(
        writer, WriteConvertedTensors(
                    in.weights(), in.config(), layers, options.output_dir,
                    TensorWriteOptions(options), after_layer));
  }
  const LatentMetadata meta{report->method, report->allocation_chosen,
                            report->budget, report->damping};
  WriteOptions wopt = TensorWriteOptions(options);
  ReportFiles files = RenderReportFiles(*report);
  wopt.report_json = std::move(files.json);
  wopt.report_html = std::move(files.html);
  CARE_RETURN_IF_ERROR(FinishConvertedCheckpoint(
      *writer, in.weights(), ConvertedConfigJson(in.config(), layers, meta),
      wopt));
  timer.Done("write", report);
  return absl::OkStatus();
}

}  // namespace care::convert::stage
