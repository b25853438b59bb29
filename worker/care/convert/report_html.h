// The conversion report as one self-contained HTML page (care_report.html,
// docs/conversion.md): summary, time per stage, per-layer ranks, held-out
// errors and retained energy, the spectra the allocation was computed from,
// every allocation candidate's held-out NLL, and any further result the
// report carries (e.g. an output layout's per-step losses, task accuracy)
// as tables. Inline SVG and CSS only: no script, no network, printable.
#ifndef CARE_CONVERT_REPORT_HTML_H_
#define CARE_CONVERT_REPORT_HTML_H_

#include <nlohmann/json.hpp>
#include <string>

#include "care/convert/report.h"

namespace care::convert {

// Rendered from the report's JSON (ReportToJson, or care_report.json read
// back), so any stored report can be rendered. Missing or mistyped fields
// are shown as absent, never an error; every string is HTML-escaped.
std::string ReportHtml(const nlohmann::json& report);

// What every output layout writes beside its checkpoint: care_report.json
// (ReportToJson, indented) and care_report.html rendered from that JSON.
struct ReportFiles {
  std::string json;
  std::string html;
};
ReportFiles RenderReportFiles(const ConversionReport& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_REPORT_HTML_H_
