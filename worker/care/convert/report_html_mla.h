// The DeepSeek-V3 layout's sections of the HTML report (report_html.h),
// rendered from the report's "deepseek_v3" object: the layout's settings
// and KV width per layer, the loss of each step (original → partial RoPE
// only → converted), every rope dim / freqfold candidate's held-out NLL,
// and the per-layer errors of the joint latent and of the rope split.
// Fields of that object it has no section for are shown as tables.
#ifndef CARE_CONVERT_REPORT_HTML_MLA_H_
#define CARE_CONVERT_REPORT_HTML_MLA_H_

#include <nlohmann/json.hpp>
#include <string>

namespace care::convert {

// Empty when the report has no "deepseek_v3" object.
std::string MlaSections(const nlohmann::json& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_REPORT_HTML_MLA_H_
