// The memory-per-stage and time-breakdown figures of the plan report.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "common/units.h"
#include "planner/report.h"
#include "planner/report_svg.h"

namespace p3d {
namespace {

struct Term {
  const char* kind;   // css suffix
  const char* label;  // legend text
  double value;
};

std::array<Term, 6> MemoryTerms(const MemoryBreakdown& m) {
  return {{{"weights", "weights", m.weights},
           {"gradients", "gradients", m.gradients},
           {"optimizer", "optimizer states", m.optimizer},
           {"activations", "activations", m.activations},
           {"buffers", "buffers", m.buffers},
           {"runtime", "runtime", m.runtime}}};
}

std::array<Term, 9> TimeTerms(const TimeBreakdown& t) {
  return {{{"compute", "compute", t.compute_s},
           {"tp", "TP comm", t.tp_comm_s},
           {"cp", "CP comm", t.cp_comm_s},
           {"pp", "PP comm", t.pp_comm_s},
           {"dp", "DP comm", t.dp_comm_s},
           {"bubble", "bubble", t.bubble_s},
           {"optimizer", "optimizer", t.optimizer_s},
           {"offload", "offload", t.offload_s},
           {"other", "other", t.other_s}}};
}

constexpr const char* kMemoryCss =
    ".memory .seg-weights, .memory .key-weights { fill: #4c78a8; }"
    " .memory .seg-gradients, .memory .key-gradients { fill: #f58518; }"
    " .memory .seg-optimizer, .memory .key-optimizer { fill: #54a24b; }"
    " .memory .seg-activations, .memory .key-activations { fill: #e45756; }"
    " .memory .seg-buffers, .memory .key-buffers { fill: #72b7b2; }"
    " .memory .seg-runtime, .memory .key-runtime { fill: #9d9d9d; }";

constexpr const char* kTimeCss =
    ".time .seg-compute, .time .key-compute { fill: #4c78a8; } .time .seg-tp, .time .key-tp { "
    "fill: #e45756; }"
    " .time .seg-cp, .time .key-cp { fill: #eeca3b; }"
    " .time .seg-pp, .time .key-pp { fill: #b279a2; } .time .seg-dp, .time .key-dp { fill: "
    "#72b7b2; }"
    " .time .seg-bubble, .time .key-bubble { fill: #d9d9d9; }"
    " .time .seg-optimizer, .time .key-optimizer { fill: #9d755d; }"
    " .time .seg-offload, .time .key-offload { fill: #ff9da6; }"
    " .time .seg-other, .time .key-other { fill: #bab0ac; }";

std::string GiB(double bytes) { return fmt::format("{:.2f} GiB", ToGiB(bytes)); }

}  // namespace

std::string RenderMemorySvg(const MemoryEstimate& memory, double capacity_bytes) {
  const size_t n = memory.stages.size();
  constexpr double kLeft = 70, kTop = 40, kPlotH = 260, kRight = 20;
  const double slot = n > 16 ? 18 : 56;
  const double bar_w = slot * 0.7;
  const double width = std::max(520.0, kLeft + slot * static_cast<double>(n) + kRight);
  double top_bytes = capacity_bytes;
  for (const StageMemory& s : memory.stages) top_bytes = std::max(top_bytes, s.memory.total());
  // Axis in GiB, rounded up to a whole number of nice steps above the tallest bar.
  const double step_gib = svg::NiceStep(std::max(ToGiB(top_bytes) * 1.08, 1.0), 5);
  const int steps = static_cast<int>(std::ceil(ToGiB(top_bytes) * 1.08 / step_gib));
  top_bytes = steps * step_gib * kGiB;
  auto y_of = [&](double bytes) { return kTop + kPlotH * (1.0 - bytes / top_bytes); };

  std::string body;
  const std::string title = "Memory per GPU by pipeline stage (predicted)";
  body += svg::Text(kLeft, 18, title, "fig-title");
  for (int i = 0; i <= steps; ++i) {  // y grid in GiB
    const double bytes = i * step_gib * kGiB;
    body += fmt::format("<line class=\"grid\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n",
                        svg::Px(kLeft), svg::Px(y_of(bytes)), svg::Px(width - kRight),
                        svg::Px(y_of(bytes)));
    body += svg::Text(kLeft - 6, y_of(bytes) + 4, fmt::format("{:g}", ToGiB(bytes)), "axis", "end");
  }
  body += svg::Text(14, kTop + kPlotH / 2, "GiB", "axis");
  const int label_every = n > 16 ? static_cast<int>((n + 15) / 16) : 1;
  for (size_t i = 0; i < n; ++i) {
    const StageMemory& s = memory.stages[i];
    const double x = kLeft + slot * static_cast<double>(i) + (slot - bar_w) / 2;
    body += fmt::format(
        "<g class=\"stage\" data-stage=\"{}\"><title>stage {}: {} layers, total {}</title>\n",
        s.stage, s.stage, s.layers, GiB(s.memory.total()));
    double base = 0;
    for (const Term& t : MemoryTerms(s.memory)) {
      const double h = kPlotH * t.value / top_bytes;
      body += fmt::format(
          "<rect class=\"seg seg-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>stage "
          "{}: {} "
          "{}</title></rect>\n",
          t.kind, svg::Px(x), svg::Px(y_of(base + t.value)), svg::Px(bar_w), svg::Px(h), s.stage,
          t.label, GiB(t.value));
      base += t.value;
    }
    if (n <= 16)
      body += svg::Text(x + bar_w / 2, y_of(base) - 4, GiB(s.memory.total()), "total", "middle");
    body += "</g>\n";
    if (static_cast<int>(i) % label_every == 0) {
      body += svg::Text(x + bar_w / 2, kTop + kPlotH + 14, fmt::format("{}", s.stage), "axis",
                        "middle");
    }
  }
  body += svg::Text(kLeft + (width - kLeft - kRight) / 2, kTop + kPlotH + 30, "pipeline stage",
                    "axis", "middle");
  body += fmt::format("<line class=\"capacity\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n",
                      svg::Px(kLeft), svg::Px(y_of(capacity_bytes)), svg::Px(width - kRight),
                      svg::Px(y_of(capacity_bytes)));
  body += svg::Text(width - kRight, y_of(capacity_bytes) - 4, "GPU capacity " + GiB(capacity_bytes),
                    "capacity-label", "end");
  double y = kTop + kPlotH + 52;
  std::vector<svg::LegendEntry> legend;
  for (const Term& t : MemoryTerms(MemoryBreakdown{})) legend.push_back({t.kind, t.label});
  body += svg::Legend(legend, kLeft, y, width - kLeft - kRight);
  return svg::Open(width, y, "memory", title, kMemoryCss) + body + "</svg>\n";
}

std::string RenderTimeSvg(const TimeBreakdown& time) {
  constexpr double kWidth = 760, kLeft = 20, kBarY = 44, kBarH = 34;
  const double plot_w = kWidth - 2 * kLeft;
  double sum = 0;
  for (const Term& t : TimeTerms(time)) sum += t.value;
  const double scale = sum > 0 ? plot_w / sum : 0;
  const std::string title = "Time per optimizer step, slowest pipeline rank (predicted)";
  std::string body = svg::Text(kLeft, 18, title, "fig-title");
  double x = kLeft;
  std::vector<svg::LegendEntry> legend;
  for (const Term& t : TimeTerms(time)) {
    const double w = t.value * scale;
    const double pct = sum > 0 ? 100.0 * t.value / sum : 0;
    body += fmt::format(
        "<rect class=\"seg seg-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{} {} "
        "({:.1f}%)</title></rect>\n",
        t.kind, svg::Px(x), svg::Px(kBarY), svg::Px(w), svg::Px(kBarH), t.label,
        svg::Seconds(t.value), pct);
    x += w;
    legend.push_back({t.kind, fmt::format("{} {} ({:.1f}%)", t.label, svg::Seconds(t.value), pct)});
  }
  body += svg::Text(kLeft, kBarY - 6, "step " + svg::Seconds(time.step_s), "total");
  double y = kBarY + kBarH + 22;
  body += svg::Legend(legend, kLeft, y, plot_w);
  return svg::Open(kWidth, y, "time", title, kTimeCss) + body + "</svg>\n";
}

}  // namespace p3d
