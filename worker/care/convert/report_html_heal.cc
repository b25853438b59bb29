#include "care/convert/report_html_heal.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/convert/report_html_util.h"
#include "care/convert/svg_chart.h"

namespace care::convert {

std::string HealSection(const nlohmann::json& d) {
  using html::At;
  using html::NumAt;
  using html::Opt;
  using html::Row;
  using html::StrAt;
  const nlohmann::json& h = At(d, "heal");
  if (!h.is_object()) return "";
  std::string s =
      "<section id=\"healing\"><h2>Healing</h2><p class=\"note\">Each "
      "layer's new attention weights optimised so that its attention output "
      "(after o_proj) matches the original layer's; a layer keeps the "
      "one-shot export unless its held-out error fell.</p><table "
      "class=\"kv\">\n";
  Row(s, "layer inputs", svg::Escape(StrAt(h, "inputs")));
  Row(s, "training tokens", Opt(NumAt(h, "train_tokens")));
  Row(s, "held-out tokens", Opt(NumAt(h, "heldout_tokens")));
  Row(s, "window length", Opt(NumAt(h, "seq_len")));
  Row(s, "steps per layer (at most)", Opt(NumAt(h, "max_steps")));
  Row(s, "seconds", Opt(NumAt(h, "seconds")));
  Row(s, "held-out NLL before → after",
      absl::StrCat(Opt(NumAt(h, "heldout_nll_before")), " → ",
                   Opt(NumAt(h, "heldout_nll_after"))));
  absl::StrAppend(&s, "</table>");
  const nlohmann::json& layers = At(h, "layers");
  if (layers.is_array() && !layers.empty()) {
    svg::BarChart c;
    c.id = "heal_errors";
    c.y_label = "attention-output error";
    c.x_label = "layer";
    c.categories = html::LayerNames(layers);
    c.series = {{"before", html::kVColor,
                 html::LayerValues(layers, "heldout_error_before")},
                {"after", html::kKColor,
                 html::LayerValues(layers, "heldout_error_after")}};
    absl::StrAppend(
        &s, svg::RenderBarChart(c),
        "<table class=\"dense\"><tr><th>layer</th><th class=\"n\">error "
        "before</th><th class=\"n\">error after</th><th "
        "class=\"n\">steps</th><th class=\"n\">best step</th><th>kept</th>"
        "</tr>\n");
    for (size_t i = 0; i < layers.size(); ++i) {
      const nlohmann::json& l = layers[i];
      absl::StrAppend(&s, "<tr><td>", c.categories[i], "</td>");
      for (const char* k : {"heldout_error_before", "heldout_error_after",
                            "steps", "best_step"}) {
        absl::StrAppend(&s, "<td class=\"n\">", Opt(NumAt(l, k)), "</td>");
      }
      absl::StrAppend(&s, "<td>",
                      At(l, "accepted") == true ? "healed" : "one-shot",
                      "</td></tr>\n");
    }
    absl::StrAppend(&s, "</table>");
  }
  return s + "</section>\n";
}

}  // namespace care::convert
