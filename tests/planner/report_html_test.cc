// The HTML report: well-formed, self-contained, escaped, one memory bar per
// pipeline stage with totals equal to the inputs, every figure "predicted".
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "common/units.h"
#include "planner/report.h"
#include "tests/planner/export_test_plans.h"
#include "tests/planner/report_test_util.h"

namespace p3d {
namespace {

using testing::MakePlan;
using testing::RequestFor;

// A plan with `pp` stages whose memory terms differ per stage and term, a
// time breakdown whose terms sum to step_s, and a 1F1B-shaped timeline.
EvaluatedPlan SyntheticPlan(int pp, int64_t ga) {
  EvaluatedPlan e;
  e.plan = MakePlan(64 / (8 * pp), 8, pp, 1, 1, 1, ga, Recompute::kSelective, true);
  e.fits = true;
  for (int s = 0; s < pp; ++s) {
    StageMemory st;
    st.stage = s;
    st.layers = 80 / pp;
    st.memory.weights = (3.0 + s) * kGiB;
    st.memory.gradients = 6.0 * kGiB + s * kMiB;
    st.memory.optimizer = 4.5 * kGiB;
    st.memory.activations = (20.0 - s) * kGiB;
    st.memory.buffers = 0.75 * kGiB;
    st.memory.runtime = 2.25 * kGiB;
    e.memory.stages.push_back(st);
  }
  e.memory.peak_stage = 0;
  e.time = {.step_s = 0,
            .compute_s = 9.5,
            .tp_comm_s = 1.25,
            .pp_comm_s = 0.125,
            .dp_comm_s = 0.5,
            .bubble_s = 0.875,
            .optimizer_s = 0.25,
            .offload_s = 0.1875,
            .other_s = 0.0625};
  e.time.step_s = e.time.compute_s + e.time.tp_comm_s + e.time.pp_comm_s + e.time.dp_comm_s +
                  e.time.bubble_s + e.time.optimizer_s + e.time.offload_s + e.time.other_s;
  e.tokens_per_s = 1234.0;
  e.mfu = 0.42;
  e.timeline = testing::OneFOneBTimeline(pp, static_cast<int>(ga), 0.01, 0.02);
  return e;
}

PlanRequest Request(const EvaluatedPlan& e) {
  PlanRequest r = RequestFor(testing::Llama2_70B(), e.plan);
  r.cluster.source = "catalog h100-sxm";
  return r;
}

TEST(ReportHtml, IsWellFormedAndSelfContained) {
  EvaluatedPlan e = SyntheticPlan(4, 8);
  std::vector<EvaluatedPlan> ranked = {e, SyntheticPlan(2, 8), SyntheticPlan(8, 16)};
  ranked[1].fits = false;
  auto html = RenderReportHtml(Request(e), ranked, 0);
  ASSERT_TRUE(html.ok()) << html.status().ToString();
  EXPECT_EQ(html->rfind("<!DOCTYPE html>", 0), 0u);
  std::string error;
  EXPECT_TRUE(testing::TagsBalanced(*html, &error)) << error;
  // Nothing fetched from anywhere: no scripts, no external resources.
  for (const char* forbidden : {"<script", "src=", "href=", "@import", "url(", "@font-face"}) {
    EXPECT_EQ(html->find(forbidden), std::string::npos) << forbidden;
  }
  std::string without_ns =
      std::regex_replace(*html, std::regex("http://www\\.w3\\.org/2000/svg"), "");
  EXPECT_EQ(without_ns.find("http"), std::string::npos);
  // Ranked table: one row per plan, the chosen one marked.
  EXPECT_EQ(testing::Count(*html, "<tr class=\"chosen\">"), 1);
  EXPECT_EQ(testing::Count(*html, "<td class=\"plan\">"), 3);
  EXPECT_EQ(testing::Count(*html, "<td class=\"no\">no</td>"), 1);
  EXPECT_NE(html->find(HtmlEscape(PlanSummary(e.plan))), std::string::npos);
}

TEST(ReportHtml, EveryFigureIsLabelledPredicted) {
  EvaluatedPlan e = SyntheticPlan(4, 8);
  auto html = RenderReportHtml(Request(e), {e}, 0);
  ASSERT_TRUE(html.ok());
  std::regex svg_title("<svg [^>]*><title>([^<]*)</title>");
  int figures = 0;
  for (auto it = std::sregex_iterator(html->begin(), html->end(), svg_title);
       it != std::sregex_iterator(); ++it) {
    ++figures;
    EXPECT_NE((*it)[1].str().find("predicted"), std::string::npos) << (*it)[1].str();
  }
  EXPECT_EQ(figures, 3);  // memory, time, timeline
}

TEST(ReportHtml, OneMemoryBarPerStageWithTotalsEqualToTheInputs) {
  for (int pp : {1, 4, 8}) {
    EvaluatedPlan e = SyntheticPlan(pp, 16);
    const std::string svg = RenderMemorySvg(e.memory, 80 * kGiB);
    EXPECT_EQ(testing::Count(svg, "<g class=\"stage\""), pp);
    EXPECT_EQ(testing::Count(svg, "class=\"seg seg-"), 6 * pp);
    for (const StageMemory& s : e.memory.stages) {
      const std::string group_start = "data-stage=\"" + std::to_string(s.stage) + "\"";
      const size_t begin = svg.find(group_start);
      ASSERT_NE(begin, std::string::npos);
      const std::string group = svg.substr(begin, svg.find("</g>", begin) - begin);
      char total[32];
      std::snprintf(total, sizeof total, "%.2f GiB", s.memory.total() / kGiB);
      EXPECT_NE(group.find(std::string(">") + total + "</text>"), std::string::npos) << group;
      char weights[32];
      std::snprintf(weights, sizeof weights, "weights %.2f GiB", s.memory.weights / kGiB);
      EXPECT_NE(group.find(weights), std::string::npos);
    }
    EXPECT_EQ(testing::Count(svg, "class=\"capacity\""), 1);
    EXPECT_NE(svg.find("GPU capacity 80.00 GiB"), std::string::npos);
  }
}

TEST(ReportHtml, ManyStagesKeepOneBarEachAndTheirTotalsInTooltips) {
  EvaluatedPlan e = SyntheticPlan(1, 8);
  e.memory.stages.clear();
  for (int s = 0; s < 40; ++s) {
    StageMemory st;
    st.stage = s;
    st.layers = 2;
    st.memory.weights = (1 + s) * kGiB;
    e.memory.stages.push_back(st);
  }
  const std::string svg = RenderMemorySvg(e.memory, 80 * kGiB);
  EXPECT_EQ(testing::Count(svg, "<g class=\"stage\""), 40);
  EXPECT_NE(svg.find("<title>stage 39: 2 layers, total 40.00 GiB</title>"), std::string::npos);
}

TEST(ReportHtml, TimeBarTotalAndTermsEqualTheInputs) {
  EvaluatedPlan e = SyntheticPlan(4, 8);
  const std::string svg = RenderTimeSvg(e.time);
  EXPECT_EQ(testing::Count(svg, "class=\"seg seg-"), 9);  // one per TimeBreakdown part
  char step[32];
  std::snprintf(step, sizeof step, "step %.3g s", e.time.step_s);
  EXPECT_NE(svg.find(step), std::string::npos) << svg;
  char compute[64];
  std::snprintf(compute, sizeof compute, "compute %.3g s (%.1f%%)", e.time.compute_s,
                100.0 * e.time.compute_s / e.time.step_s);
  EXPECT_NE(svg.find(compute), std::string::npos) << compute;
}

TEST(ReportHtml, EscapesEveryInputText) {
  EvaluatedPlan e = SyntheticPlan(2, 8);
  PlanRequest r = Request(e);
  r.model.name = "<script>alert('x')</script> & \"co\"";
  r.cluster.gpu.description = "GPU <b>";
  auto html = RenderReportHtml(r, {e}, 0);
  ASSERT_TRUE(html.ok());
  EXPECT_EQ(html->find("<script"), std::string::npos);
  EXPECT_EQ(html->find("<b>"), std::string::npos);
  EXPECT_NE(html->find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"),
            std::string::npos);
  std::string error;
  EXPECT_TRUE(testing::TagsBalanced(*html, &error)) << error;
}

TEST(ReportHtml, SaysWhenThereIsNoTimeline) {
  EvaluatedPlan e = SyntheticPlan(2, 8);
  e.timeline.clear();
  auto html = RenderReportHtml(Request(e), {e}, 0);
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->find("No pipeline timeline"), std::string::npos);
  EXPECT_EQ(html->find("fig timeline"), std::string::npos);
}

TEST(ReportHtml, RejectsEmptyRankingAndOutOfRangeChoice) {
  EvaluatedPlan e = SyntheticPlan(2, 8);
  EXPECT_FALSE(RenderReportHtml(Request(e), {}, 0).ok());
  auto r = RenderReportHtml(Request(e), {e, e}, 2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("outside the 2 ranked plans"), std::string::npos);
  EXPECT_FALSE(RenderReportHtml(Request(e), {e}, -1).ok());
}

}  // namespace
}  // namespace p3d
