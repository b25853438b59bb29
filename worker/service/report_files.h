// The full report a worker sends with CompleteJob: care_report.json and
// care_report.html as the pipeline wrote them into the job's output
// directory, for the server to store (ConversionService.GetJobReport).
#ifndef CARE_WORKER_SERVICE_REPORT_FILES_H_
#define CARE_WORKER_SERVICE_REPORT_FILES_H_

#include <string>
#include <vector>

#include "care/v1/worker_service.pb.h"

namespace care::worker {

// Reads both files from `report.output_uri()` (a path or file:// URI) into
// `request`. A file that is missing, unreadable or over
// api::kMaxReportFileBytes is left out; the returned lines say which and why
// (for the log). The job still completes: the files stay in its output.
std::vector<std::string> AttachReportFiles(
    const care::v1::Report& report, care::v1::CompleteJobRequest* request);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_REPORT_FILES_H_
