// Pipeline timeline of one step as SVG: one row per pipeline rank, one box
// per TimelineEvent. Compute (forward, backward, recompute, optimizer, idle)
// fills the upper part of a row; communication (send/recv, TP, DP) the lower
// strip, so overlapped communication stays visible under the compute.
#include <fmt/format.h>

#include <algorithm>

#include "planner/report.h"
#include "planner/report_svg.h"

namespace p3d {
namespace {

struct KindStyle {
  TimelineKind kind;
  const char* css;
  const char* label;
  bool comm;  // drawn in the lower strip
};

// Every kind, in legend order.
constexpr KindStyle kStyles[] = {{TimelineKind::kForward, "forward", "forward", false},
                                 {TimelineKind::kBackward, "backward", "backward", false},
                                 {TimelineKind::kRecompute, "recompute", "recompute", false},
                                 {TimelineKind::kSendRecv, "sendrecv", "send/recv", true},
                                 {TimelineKind::kTpComm, "tp", "TP comm", true},
                                 {TimelineKind::kDpComm, "dp", "DP comm", true},
                                 {TimelineKind::kOptimizer, "optimizer", "optimizer", false},
                                 {TimelineKind::kIdle, "idle", "idle", false}};

KindStyle Style(TimelineKind kind) {
  for (const KindStyle& s : kStyles)
    if (s.kind == kind) return s;
  return {kind, "idle", "?", false};
}

int Rows(std::span<const TimelineEvent> events) {
  int rows = 0;
  for (const TimelineEvent& e : events) rows = std::max(rows, e.rank + 1);
  return rows;
}

constexpr const char* kTimelineCss =
    ".timeline .ev-forward, .timeline .key-forward { fill: #4c78a8; }"
    " .timeline .ev-backward, .timeline .key-backward { fill: #54a24b; }"
    " .timeline .ev-recompute, .timeline .key-recompute { fill: #f58518; }"
    " .timeline .ev-sendrecv, .timeline .key-sendrecv { fill: #b279a2; }"
    " .timeline .ev-tp, .timeline .key-tp { fill: #e45756; } .timeline .ev-dp, .timeline .key-dp { "
    "fill: #72b7b2; }"
    " .timeline .ev-optimizer, .timeline .key-optimizer { fill: #9d755d; }"
    " .timeline .ev-idle, .timeline .key-idle { fill: #e6e6e6; }";

constexpr double kLabelW = 130, kRight = 16, kTrackHeader = 18;

}  // namespace

std::string RenderTimelineSvg(const std::vector<TimelineEvent>& events,
                              const TimelineStyle& style) {
  return RenderTimelineSvg(std::vector<TimelineTrack>{{style.label, events}}, style);
}

std::string RenderTimelineSvg(const std::vector<TimelineTrack>& tracks,
                              const TimelineStyle& style) {
  double end_s = style.time_end_s;
  if (end_s <= 0) {
    for (const TimelineTrack& t : tracks) {
      for (const TimelineEvent& e : t.events) end_s = std::max(end_s, e.end_s);
    }
  }
  if (end_s <= 0) end_s = 1.0;  // nothing to draw: keep the axis finite
  const double plot_w = style.width_px - kLabelW - kRight;
  const double row_h = style.row_height_px;
  auto x_of = [&](double t) { return kLabelW + plot_w * std::clamp(t / end_s, 0.0, 1.0); };

  std::string body;
  double y = 6;
  if (!style.title.empty()) {
    y += 14;
    body += svg::Text(kLabelW, y, style.title, "fig-title");
    y += 6;
  }
  for (const TimelineTrack& track : tracks) {
    y += kTrackHeader;
    body += svg::Text(4, y - 5, track.label, "track");
    const double top = y;
    const int rows = Rows(track.events);
    for (int r = 0; r < rows; ++r) {
      const double ry = top + r * row_h;
      body += fmt::format("<rect class=\"row\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
                          svg::Px(kLabelW), svg::Px(ry), svg::Px(plot_w), svg::Px(row_h - 2));
      body +=
          svg::Text(kLabelW - 6, ry + row_h * 0.65, fmt::format("PP rank {}", r), "axis", "end");
    }
    for (const TimelineEvent& e : track.events) {
      const KindStyle k = Style(e.kind);
      const double ry = top + e.rank * row_h;
      const double compute_h = (row_h - 2) * 0.68;
      const double ey = k.comm ? ry + compute_h : ry;
      const double eh = k.comm ? row_h - 2 - compute_h : compute_h;
      const double x0 = x_of(e.start_s), x1 = x_of(e.end_s);
      const std::string mb = e.microbatch >= 0 ? fmt::format(" micro-batch {}", e.microbatch) : "";
      body += fmt::format(
          "<rect class=\"ev ev-{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{} rank "
          "{}{} chunk {}: {} "
          "to {}</title></rect>\n",
          k.css, svg::Px(x0), svg::Px(ey), svg::Px(std::max(x1 - x0, 0.5)), svg::Px(eh),
          HtmlEscape(track.label), e.rank, mb, e.chunk, svg::Seconds(e.start_s),
          svg::Seconds(e.end_s));
      const std::string number = std::to_string(e.microbatch);
      if (!k.comm && e.microbatch >= 0 && x1 - x0 >= 7.0 * static_cast<double>(number.size()) + 4) {
        body += svg::Text((x0 + x1) / 2, ey + eh * 0.5 + 4, number, "mb", "middle");
      }
    }
    y = top + rows * row_h + 4;
  }
  // One time axis for all tracks.
  const double step = svg::NiceStep(end_s, 8);
  body += fmt::format("<line class=\"axis-line\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n",
                      svg::Px(kLabelW), svg::Px(y), svg::Px(kLabelW + plot_w), svg::Px(y));
  for (double t = 0; t <= end_s * (1 + 1e-9); t += step) {
    body += fmt::format("<line class=\"tick\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n",
                        svg::Px(x_of(t)), svg::Px(y), svg::Px(x_of(t)), svg::Px(y + 4));
    body += svg::Text(x_of(t), y + 16, svg::Seconds(t), "axis", "middle");
  }
  y += 40;
  std::vector<svg::LegendEntry> legend;
  for (const KindStyle& s : kStyles) legend.push_back({s.css, s.label});
  body += svg::Legend(legend, kLabelW, y, plot_w);
  std::string title = style.title.empty() ? "Pipeline timeline of one step" : style.title;
  for (const TimelineTrack& t : tracks) title += " (" + t.label + ")";
  return svg::Open(style.width_px, y, "timeline", title, kTimelineCss) + body + "</svg>\n";
}

}  // namespace p3d
