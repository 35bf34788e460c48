// The timeline SVG: one rect per event, one row per pipeline rank,
// micro-batch numbers in the boxes, two tracks on one time axis.
#include <gtest/gtest.h>

#include <regex>

#include "planner/report.h"
#include "tests/planner/report_test_util.h"

namespace p3d {
namespace {

using testing::Count;

TEST(TimelineSvg, OneRectPerEventAndOneRowPerRank) {
  for (auto [pp, m] : {std::pair{2, 4}, std::pair{4, 8}, std::pair{8, 16}}) {
    const auto events = testing::OneFOneBTimeline(pp, m, 0.010, 0.020);
    TimelineStyle style;
    style.title = "1F1B";
    const std::string svg = RenderTimelineSvg(events, style);
    EXPECT_EQ(Count(svg, "<rect class=\"ev "), static_cast<int>(events.size()));
    EXPECT_EQ(Count(svg, "<rect class=\"row\""), pp);
    EXPECT_EQ(Count(svg, "<rect class=\"ev ev-forward\""), pp * m);
    EXPECT_EQ(Count(svg, "<rect class=\"ev ev-backward\""), pp * m);
    EXPECT_EQ(Count(svg, ">PP rank " + std::to_string(pp - 1) + "<"), 1);
    std::string error;
    EXPECT_TRUE(testing::TagsBalanced(svg, &error)) << error;
    EXPECT_NE(svg.find("<title>1F1B (predicted)</title>"), std::string::npos);
  }
}

TEST(TimelineSvg, EventGeometryFollowsItsTimes) {
  // One forward from 25% to 75% of the axis on rank 1 of 2.
  std::vector<TimelineEvent> events = {{0, TimelineKind::kIdle, -1, 0, 0.0, 0.4},
                                       {1, TimelineKind::kForward, 3, 0, 0.1, 0.3}};
  TimelineStyle style;
  style.width_px = 1146;  // 130 px of labels + 1000 px of plot + 16 px margin
  const std::string svg = RenderTimelineSvg(events, style);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(svg, match,
                                std::regex("class=\"ev ev-forward\" x=\"([0-9.]+)\" y=\"[0-9.]+\" "
                                           "width=\"([0-9.]+)\"")));
  EXPECT_NEAR(std::stod(match[1]), 130 + 1000 * 0.25, 0.1);
  EXPECT_NEAR(std::stod(match[2]), 1000 * 0.5, 0.1);
  EXPECT_NE(svg.find("micro-batch 3 chunk 0: 100 ms to 300 ms"), std::string::npos);
  EXPECT_EQ(Count(svg, "<text class=\"mb\""), 1);  // idle boxes carry no number
  EXPECT_NE(svg.find(">3</text>"), std::string::npos);
}

TEST(TimelineSvg, NarrowBoxesDropTheNumberButKeepTheRect) {
  std::vector<TimelineEvent> events;
  for (int i = 0; i < 200; ++i)
    events.push_back({0, TimelineKind::kForward, i, 0, i * 1.0, i + 1.0});
  const std::string svg = RenderTimelineSvg(events, TimelineStyle{});
  EXPECT_EQ(Count(svg, "<rect class=\"ev "), 200);
  EXPECT_EQ(Count(svg, "<text class=\"mb\""), 0);
}

TEST(TimelineSvg, PredictedAndMeasuredShareOneAxis) {
  const auto predicted = testing::OneFOneBTimeline(4, 8, 0.010, 0.020);
  const auto measured = testing::OneFOneBTimeline(4, 8, 0.012, 0.025);
  TimelineStyle style;
  style.title = "Llama step";
  const std::string svg =
      RenderTimelineSvg({{"predicted", predicted}, {"measured", measured}}, style);
  EXPECT_EQ(Count(svg, "<rect class=\"ev "), static_cast<int>(predicted.size() + measured.size()));
  EXPECT_EQ(Count(svg, "<rect class=\"row\""), 8);
  EXPECT_EQ(Count(svg, "class=\"axis-line\""), 1);
  EXPECT_EQ(Count(svg, ">predicted</text>"), 1);
  EXPECT_EQ(Count(svg, ">measured</text>"), 1);
  EXPECT_NE(svg.find("<title>Llama step (predicted) (measured)</title>"), std::string::npos);
  // The axis spans the later of the two (the measured run): its last box
  // ends at the right edge of the plot.
  double end = 0;
  for (const auto& e : measured) end = std::max(end, e.end_s);
  std::regex rect("class=\"ev ev-[a-z]+\" x=\"([0-9.]+)\" y=\"[0-9.]+\" width=\"([0-9.]+)\"");
  double right = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator();
       ++it) {
    right = std::max(right, std::stod((*it)[1]) + std::stod((*it)[2]));
  }
  EXPECT_NEAR(right, TimelineStyle{}.width_px - 16, 0.2);
}

TEST(TimelineSvg, EscapesTrackLabelsAndTitle) {
  const auto events = testing::OneFOneBTimeline(2, 2, 1, 2);
  TimelineStyle style;
  style.title = "a<b & c";
  const std::string svg = RenderTimelineSvg({{"run \"7\" <gpu>", events}}, style);
  EXPECT_EQ(svg.find("<gpu>"), std::string::npos);
  EXPECT_NE(svg.find("run &quot;7&quot; &lt;gpu&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b &amp; c"), std::string::npos);
  std::string error;
  EXPECT_TRUE(testing::TagsBalanced(svg, &error)) << error;
}

}  // namespace
}  // namespace p3d
