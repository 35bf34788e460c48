// The plan report: a self-contained HTML page (inline CSS and inline SVG, no
// scripts, no network, no external fonts) and the SVG figures it is made of.
// Every figure is labelled "predicted"; a measured timeline (issue 6) can be
// drawn beside a predicted one on one time axis with the two-track
// RenderTimelineSvg. All text taken from inputs is HTML-escaped.
//
// SVG element classes (stable, tests and stylesheets rely on them):
//   memory chart: <g class="stage"> per pipeline stage, holding one
//     <rect class="seg seg-KIND"> per memory term and a <text class="total">;
//     <line class="capacity"> marks the GPU's memory.
//   time chart: <rect class="seg seg-KIND"> per time term, <text class="total">.
//   timeline: one <rect class="ev ev-KIND"> per TimelineEvent (with a
//     <title> tooltip), <text class="mb"> micro-batch numbers in boxes wide
//     enough to hold them; legend swatches are class "key", never "ev".
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "simulator/evaluated_plan.h"
#include "simulator/estimate.h"

namespace p3d {

struct TimelineStyle {
  std::string title;                // drawn above the rows; empty = none
  std::string label = "predicted";  // track label of the one-track overload
  double width_px = 960;            // whole figure
  double row_height_px = 22;        // one pipeline rank
  double time_end_s = 0;            // right end of the axis; 0 = latest event end
};

// One timeline drawn as rows of pipeline ranks, e.g. {"predicted", events}.
struct TimelineTrack {
  std::string label;
  std::span<const TimelineEvent> events;
};

// One track (labelled style.label), rows = pipeline ranks 0..max rank.
std::string RenderTimelineSvg(const std::vector<TimelineEvent>& events, const TimelineStyle& style);
// Tracks stacked top to bottom, sharing one time axis (0 .. style.time_end_s
// or the latest end over all tracks).
std::string RenderTimelineSvg(const std::vector<TimelineTrack>& tracks, const TimelineStyle& style);

// Stacked bars of MemoryBreakdown per pipeline stage against `capacity_bytes`.
std::string RenderMemorySvg(const MemoryEstimate& memory, double capacity_bytes);
// One stacked bar of the TimeBreakdown terms; labelled with step_s.
std::string RenderTimeSvg(const TimeBreakdown& time);

// The whole report. `chosen` is a 0-based index into `ranked` (the CLI's
// --pick K is chosen = K - 1). Errors: empty `ranked` or `chosen` out of range.
StatusOr<std::string> RenderReportHtml(const PlanRequest& request,
                                       const std::vector<EvaluatedPlan>& ranked, int chosen);

// Text made safe for HTML and SVG element content and attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace p3d
