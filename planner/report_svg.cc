#include "planner/report_svg.h"

#include <fmt/format.h>

#include <cmath>

#include "planner/report.h"

namespace p3d {

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace svg {

std::string Px(double v) { return fmt::format("{:.1f}", v); }

namespace {
constexpr std::string_view kFigureCss =
    ".fig { font-family: system-ui, sans-serif; font-size: 11px; background: #fff; }"
    " .fig text { fill: #333; } .fig .fig-title { font-size: 13px; font-weight: 600; }"
    " .fig .track { font-weight: 600; } .fig .mb { fill: #fff; font-size: 10px; }"
    " .fig .grid { stroke: #e5e5e5; } .fig .row { fill: #f7f7f7; }"
    " .fig .axis-line, .fig .tick { stroke: #888; }"
    " .fig .capacity { stroke: #c00; stroke-width: 2; stroke-dasharray: 6 3; } .fig "
    ".capacity-label { fill: #c00; }"
    " .fig .ev { stroke: #fff; stroke-width: 0.5; }"
    " .fig .total, .fig .capacity-label { paint-order: stroke; stroke: #fff; stroke-width: 3px; }";
}  // namespace

std::string Open(double width, double height, std::string_view css_class, std::string_view title,
                 std::string_view css) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"fig {}\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\"><title>{}</title>\n<style>{} {}</style>\n",
      css_class, Px(width), Px(height), Px(width), Px(height), HtmlEscape(title), kFigureCss, css);
}

std::string Text(double x, double y, std::string_view text, std::string_view css_class,
                 std::string_view anchor) {
  return fmt::format("<text class=\"{}\" x=\"{}\" y=\"{}\" text-anchor=\"{}\">{}</text>\n",
                     css_class, Px(x), Px(y), anchor, HtmlEscape(text));
}

std::string Legend(const std::vector<LegendEntry>& entries, double x, double& y, double width) {
  constexpr double kSwatch = 10, kGap = 16, kCharPx = 6.2, kLine = 18;
  std::string out;
  double cx = x;
  for (const LegendEntry& e : entries) {
    const double w = kSwatch + 4 + kCharPx * static_cast<double>(e.label.size()) + kGap;
    if (cx + w > x + width && cx > x) {
      cx = x;
      y += kLine;
    }
    out +=
        fmt::format("<rect class=\"key key-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
                    e.kind, Px(cx), Px(y - kSwatch + 1), Px(kSwatch), Px(kSwatch));
    out += Text(cx + kSwatch + 4, y, e.label, "legend");
    cx += w;
  }
  y += kLine;
  return out;
}

double NiceStep(double span, int target) {
  const double raw = span / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

std::string Seconds(double s) {
  if (s < 1.0) return fmt::format("{:.3g} ms", s * 1e3);
  return fmt::format("{:.3g} s", s);
}

}  // namespace svg
}  // namespace p3d
