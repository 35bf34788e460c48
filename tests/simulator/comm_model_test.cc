// Communication model: ring cost formulas and which link a group uses under
// the rank layout rank = tp + TP*(dp + DP*pp). Links are built inline from
// published.md sec. 5 (DGX A100: NVLink3 300 GB/s per direction per GPU, 8
// GPUs per node, HDR 25 GB/s per GPU) so the test does not move with the catalog.
#include "simulator/comm_model.h"

#include <gtest/gtest.h>

namespace p3d {
namespace {

NodeSpec DgxA100() {
  NodeSpec n;
  n.gpus_per_node = 8;
  n.intra = {"nvlink3", 300e9, 0.8, 8e-6};
  n.inter = {"ib-hdr", 25e9, 0.9, 15e-6};
  return n;
}

TEST(CommModelTest, RingFormulasInsideANode) {
  const GroupPath tp8 = GroupPathFor(DgxA100(), 8, 1);
  ASSERT_FALSE(tp8.spans_nodes);
  const double bw = 300e9 * 0.8, bytes = 1e9;
  EXPECT_DOUBLE_EQ(CollectiveSeconds(Collective::kAllReduce, bytes, tp8),
                   2.0 * 7 / 8 * bytes / bw + 2 * 7 * 8e-6);
  EXPECT_DOUBLE_EQ(CollectiveSeconds(Collective::kReduceScatter, bytes, tp8),
                   7.0 / 8 * bytes / bw + 7 * 8e-6);
  EXPECT_DOUBLE_EQ(CollectiveSeconds(Collective::kAllGather, bytes, tp8),
                   CollectiveSeconds(Collective::kReduceScatter, bytes, tp8));
  // Reduce-scatter + all-gather (sequence parallel) costs what one all-reduce costs.
  EXPECT_DOUBLE_EQ(2 * CollectiveSeconds(Collective::kAllGather, bytes, tp8),
                   CollectiveSeconds(Collective::kAllReduce, bytes, tp8));
  EXPECT_EQ(CollectiveSeconds(Collective::kAllReduce, bytes, GroupPathFor(DgxA100(), 1, 1)), 0);
}

TEST(CommModelTest, RankLayoutDecidesTheLink) {
  const NodeSpec n = DgxA100();
  // TP=4, DP=2: DP members are 4 apart, TP*DP = 8 <= 8: inside one node.
  GroupPath dp = GroupPathFor(n, 2, 4);
  EXPECT_FALSE(dp.spans_nodes);
  EXPECT_EQ(dp.members_per_node, 2);
  // TP=4, DP=4: TP*DP = 16 > 8: two members per node, two nodes.
  dp = GroupPathFor(n, 4, 4);
  EXPECT_TRUE(dp.spans_nodes);
  EXPECT_EQ(dp.members_per_node, 2);
  EXPECT_DOUBLE_EQ(dp.bus_bytes_per_s, 25e9 * 0.9);
  EXPECT_DOUBLE_EQ(dp.latency_s, 15e-6);
  // TP=8: each DP member on its own node.
  dp = GroupPathFor(n, 16, 8);
  EXPECT_EQ(dp.members_per_node, 1);
  EXPECT_TRUE(dp.spans_nodes);
  // TP=16 crosses nodes too (allowed only when the planner is told so).
  EXPECT_TRUE(GroupPathFor(n, 16, 1).spans_nodes);
  // Across nodes the same bytes take intra/inter bandwidth ratio longer.
  const double inside = CollectiveSeconds(Collective::kAllReduce, 1e9, GroupPathFor(n, 8, 1));
  const double across = CollectiveSeconds(Collective::kAllReduce, 1e9, GroupPathFor(n, 8, 8));
  EXPECT_GT(across, inside * 10);
}

TEST(CommModelTest, SendRecvUsesTheLinkBetweenTheTwoRanks) {
  const NodeSpec n = DgxA100();
  const double bytes = 64e6;
  // PP neighbours TP*DP = 4 apart: ranks 0 and 4 share node 0; ranks 4 and 8 do not.
  EXPECT_DOUBLE_EQ(SendRecvSeconds(n, bytes, 0, 4), bytes / (300e9 * 0.8) + 8e-6);
  EXPECT_DOUBLE_EQ(SendRecvSeconds(n, bytes, 4, 4), bytes / (25e9 * 0.9) + 15e-6);
  EXPECT_EQ(SendRecvSeconds(n, 0, 0, 4), 0);
}

}  // namespace
}  // namespace p3d
