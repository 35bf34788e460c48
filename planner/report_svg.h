// Small SVG-writing helpers shared by the report figures (internal to
// planner/report_*.cc and planner/timeline_svg.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace p3d::svg {

// Coordinates with one decimal, e.g. "12.5".
std::string Px(double v);

// <svg ...> opening tag of a standalone figure `width` x `height` pixels,
// with an accessible <title> and a <style> holding the shared figure rules
// plus `css` (the figure's palette, its selectors scoped by `css_class`), so
// the figure renders the same inline in the report or on its own.
std::string Open(double width, double height, std::string_view css_class, std::string_view title,
                 std::string_view css);

// <text> at (x, y); `text` is escaped here.
std::string Text(double x, double y, std::string_view text, std::string_view css_class,
                 std::string_view anchor = "start");

// A legend: one swatch (class "key key-KIND") and its label per entry, laid
// out left to right from (x, y); returns the SVG and advances y past it.
struct LegendEntry {
  std::string kind;   // css suffix, e.g. "weights"
  std::string label;  // shown text (escaped here)
};
std::string Legend(const std::vector<LegendEntry>& entries, double x, double& y, double width);

// A "nice" axis step (1, 2 or 5 x 10^k) giving about `target` steps over `span`.
double NiceStep(double span, int target);

// Seconds as a short human string: "123 ms", "1.23 s".
std::string Seconds(double s);

}  // namespace p3d::svg
