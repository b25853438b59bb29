// The write stage: the converted checkpoint, in the CARE latent layout
// (docs/checkpoint-format.md), with the report so far as care_report.json
// and care_report.html (report_html.h).
// Another output layout is another writer, chosen here from ConvertOptions.
#include <utility>

#include "base/status_macros.h"
#include "care/convert/report_html.h"
#include "care/convert/stages/stages.h"
#include "care/convert/write_checkpoint.h"

namespace care::convert::stage {

absl::Status Write(const ConvertOptions& options, const Inputs& in,
                   const std::vector<LatentLayer>& layers,
                   StageProgress& progress, ConversionReport* report) {
  StageTimer timer;
  const LatentMetadata meta{report->method, report->allocation_chosen,
                            report->budget, report->damping};
  WriteOptions wopt;
  wopt.overwrite = options.overwrite;
  wopt.dtype = options.output_dtype;
  ReportFiles files = RenderReportFiles(*report);
  wopt.report_json = std::move(files.json);
  wopt.report_html = std::move(files.html);
  wopt.temp_tag = options.staging_tag;
  wopt.before_commit = options.before_publish;
  CARE_RETURN_IF_ERROR(WriteConvertedCheckpoint(
      in.weights(), in.config(), layers,
      ConvertedConfigJson(in.config(), layers, meta), options.output_dir, wopt,
      progress.Layers("write", in.num_layers())));
  timer.Done("write", report);
  return absl::OkStatus();
}

}  // namespace care::convert::stage
