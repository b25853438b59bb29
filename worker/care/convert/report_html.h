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

namespace care::convert {

// Rendered from the report's JSON (ReportToJson, or care_report.json read
// back), so any stored report can be rendered. Missing or mistyped fields
// are shown as absent, never an error; every string is HTML-escaped.
std::string ReportHtml(const nlohmann::json& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_REPORT_HTML_H_
