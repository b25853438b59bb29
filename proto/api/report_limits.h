// The size limit on the report files a worker sends with CompleteJob
// (report_json, report_html) and the server stores for GetJobReport. Real
// reports are far smaller (spectra are sampled to a bounded size); the
// limit keeps a CompleteJob well inside the server's message limit.
#ifndef CARE_API_REPORT_LIMITS_H_
#define CARE_API_REPORT_LIMITS_H_

#include <cstddef>

namespace care::api {

inline constexpr size_t kMaxReportFileBytes = size_t{4} << 20;  // 4 MiB

}  // namespace care::api

#endif  // CARE_API_REPORT_LIMITS_H_
