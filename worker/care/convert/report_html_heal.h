// The healing section of the HTML report (report_html_mla.h), rendered
// from "deepseek_v3.heal" (docs/conversion.md "Healing"): what healing ran
// on and cost, the export's held-out NLL before/after, and per layer the
// attention-output error after o_proj before/after on the held-out windows.
#ifndef CARE_CONVERT_REPORT_HTML_HEAL_H_
#define CARE_CONVERT_REPORT_HTML_HEAL_H_

#include <nlohmann/json.hpp>
#include <string>

namespace care::convert {

// Empty when `deepseek_v3` has no "heal" object.
std::string HealSection(const nlohmann::json& deepseek_v3);

}  // namespace care::convert

#endif  // CARE_CONVERT_REPORT_HTML_HEAL_H_
