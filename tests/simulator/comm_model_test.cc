// Communication model: ring cost formulas and which link a group uses under
// the rank layout rank = tp + TP*(dp + DP*pp). Links are built inline from
// published.md sec. 5 (DGX A100: NVLink3 300 GB/s per direction per GPU, 8
// GPUs per node, HDR 25 GB/s per GPU) so the test does not move with the catalog.
#include "simulator/comm_model.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace p3d {
namespace {

Network DgxA100() { return NodeNetwork(8, {"nvlink3", 300e9, 0.8, 8e-6}, {"ib-hdr", 25e9, 0.9, 15e-6}); }

TEST(CommModelTest, RingFormulasInsideANode) {
  const GroupPath tp8 = GroupPathFor(DgxA100(), 8, 1);
  ASSERT_EQ(tp8.tier, 0);
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
  const Network n = DgxA100();
  // TP=4, DP=2: DP members are 4 apart, TP*DP = 8 <= 8: inside one node.
  GroupPath dp = GroupPathFor(n, 2, 4);
  EXPECT_EQ(dp.tier, 0);
  EXPECT_DOUBLE_EQ(dp.bus_bytes_per_s, 300e9 * 0.8);
  // TP=4, DP=4: TP*DP = 16 > 8: two members per node, two nodes.
  dp = GroupPathFor(n, 4, 4);
  EXPECT_EQ(dp.tier, 1);
  EXPECT_DOUBLE_EQ(dp.bus_bytes_per_s, 25e9 * 0.9);
  EXPECT_DOUBLE_EQ(dp.latency_s, 15e-6);
  // TP=8: each DP member on its own node.
  dp = GroupPathFor(n, 16, 8);
  EXPECT_EQ(dp.tier, 1);
  // TP=16 crosses nodes too (allowed only when the planner is told so).
  EXPECT_EQ(GroupPathFor(n, 16, 1).tier, 1);
  // Across nodes the same bytes take intra/inter bandwidth ratio longer.
  const double inside = CollectiveSeconds(Collective::kAllReduce, 1e9, GroupPathFor(n, 8, 1));
  const double across = CollectiveSeconds(Collective::kAllReduce, 1e9, GroupPathFor(n, 8, 8));
  EXPECT_GT(across, inside * 10);
}

// All-to-all: each rank sends 1/n of its buffer to every member directly,
// to the members of its own node over NVLink and to the others over its NIC
// share, at once.
TEST(CommModelTest, AllToAllSplitsTheBufferByWhereThePeersAre) {
  const Network net = DgxA100();
  const double bytes = 1e9, nvlink = 300e9 * 0.8, nic = 25e9 * 0.9;
  // Inside one node: the all-gather's volume over NVLink.
  const GroupPath in = GroupPathFor(net, 8, 1);
  EXPECT_DOUBLE_EQ(AllToAllSeconds(bytes, in), 7.0 / 8 * bytes / nvlink + 7 * 8e-6);
  // 16 ranks on 2 nodes: 7/16 over NVLink beside 8/16 over the NIC.
  const GroupPath two = GroupPathFor(net, 16, 1);
  EXPECT_EQ(two.inner_members, 8);
  EXPECT_DOUBLE_EQ(AllToAllSeconds(bytes, two), 8.0 / 16 * bytes / nic + 15 * 15e-6);
  EXPECT_LT(AllToAllSeconds(bytes, two), CollectiveSeconds(Collective::kAllGather, bytes, two));
  // One rank per node: everything crosses the network, as an all-gather's volume.
  const GroupPath spread = GroupPathFor(net, 16, 8);
  EXPECT_EQ(spread.inner_members, 1);
  EXPECT_DOUBLE_EQ(AllToAllSeconds(bytes, spread), CollectiveSeconds(Collective::kAllGather, bytes, spread));
  EXPECT_EQ(AllToAllSeconds(bytes, GroupPathFor(net, 1, 1)), 0);
}

// Balanced top-k routing: the expected number of groups of experts a token's
// k distinct experts fall in, N*(1 - C(E - E/N, k)/C(E, k)).
TEST(CommModelTest, ExpectedDistinctGroupsOfATokensExperts) {
  // 4 experts in 2 groups, top-2: both in one group for 2 of the 6 pairs.
  EXPECT_DOUBLE_EQ(ExpectedDistinctGroups(4, 2, 2), 2 * (1 - 1.0 / 6));
  EXPECT_DOUBLE_EQ(ExpectedDistinctGroups(256, 8, 1), 1);   // top-1: one group
  EXPECT_DOUBLE_EQ(ExpectedDistinctGroups(256, 1, 8), 1);   // one group holds them all
  EXPECT_NEAR(ExpectedDistinctGroups(256, 256, 8), 8, 1e-12);  // one expert per group
  EXPECT_DOUBLE_EQ(ExpectedDistinctGroups(8, 4, 8), 4);     // every expert: every group
  // DeepSeek-V3 (top-8 of 256) over 8 nodes: 5.29 of them, not 8.
  double miss = 1;
  for (int i = 0; i < 8; ++i) miss *= (224.0 - i) / (256.0 - i);
  EXPECT_NEAR(ExpectedDistinctGroups(256, 8, 8), 8 * (1 - miss), 1e-12);
  EXPECT_NEAR(ExpectedDistinctGroups(256, 8, 8), 5.2947, 1e-4);
}

// DeepEP sends a token once to each node holding one of its experts (RDMA,
// at the NIC share) and fans it out inside the node over NVLink, once per
// destination rank; the all-to-all dispatcher sends one copy per expert.
TEST(CommModelTest, DeepEpCrossesOncePerDestinationNode) {
  const Network net = DgxA100();
  const double tb = 1e6, nvlink = 300e9 * 0.8, nic = 25e9 * 0.9;
  // EP 64 on 8 nodes, top-8 of 256 experts: d = 5.29 of a token's 8 copies
  // go to distinct nodes, 7/8 of them remote.
  const GroupPath ep64 = GroupPathFor(net, 64, 1);
  const double d = ExpectedDistinctGroups(256, 8, 8), r = ExpectedDistinctGroups(256, 64, 8);
  const double deepep = DeepEpAllToAllSeconds(tb, {256, 8}, ep64), plain = AllToAllSeconds(8 * tb, ep64);
  EXPECT_LT(d, 8);
  EXPECT_DOUBLE_EQ(deepep, std::max(r * 7 / 8 * tb / nvlink, d * 7 / 8 * tb / nic) + 63 * 15e-6);
  EXPECT_DOUBLE_EQ(plain, 8.0 * 7 / 8 * tb / nic + 63 * 15e-6);
  // The NIC leg bounds both: the cross-node time shrinks by d/8.
  EXPECT_NEAR((deepep - 63 * 15e-6) / (plain - 63 * 15e-6), d / 8, 1e-12);
  // Inside one node: once per destination rank over NVLink (r of k = 4 copies).
  const GroupPath in = GroupPathFor(net, 8, 1);
  const double r8 = ExpectedDistinctGroups(32, 8, 4);
  EXPECT_DOUBLE_EQ(DeepEpAllToAllSeconds(tb, {32, 4}, in), r8 * 7 / 8 * tb / nvlink + 7 * 8e-6);
  EXPECT_LT(DeepEpAllToAllSeconds(tb, {32, 4}, in), AllToAllSeconds(4 * tb, in));
  EXPECT_EQ(DeepEpAllToAllSeconds(tb, {256, 8}, GroupPathFor(net, 1, 1)), 0);
}

// DeepSeek-V3's group-limited routing (8 groups of 32 experts, a token's top-8
// from at most 4 groups): with EP 64 on 8 nodes each node holds one group, so
// a token reaches at most 4 nodes (the paper's node-limited routing, M = 4);
// without the limit 5.29. Slices finer than a group: only the chosen groups'
// ranks can be hit. No limit or no tiling: the unrestricted count.
TEST(CommModelTest, GroupLimitedRoutingCapsTheNodesATokenReaches) {
  const ExpertRouting dsv3{256, 8, 8, 4}, free{256, 8};
  // One group per node: the 4 chosen groups' nodes, each missed only when all
  // 8 experts land in the other 3 chosen groups (C(96, 8) / C(128, 8)).
  double miss = 1;
  for (int i = 0; i < 8; ++i) miss *= (96.0 - i) / (128.0 - i);
  EXPECT_NEAR(ExpectedSlicesHit(dsv3, 8), 8 * 0.5 * (1 - miss), 1e-12);
  EXPECT_LT(ExpectedSlicesHit(dsv3, 8), 4);
  EXPECT_LT(ExpectedSlicesHit(dsv3, 8), ExpectedSlicesHit(free, 8));
  EXPECT_DOUBLE_EQ(ExpectedSlicesHit(free, 8), ExpectedDistinctGroups(256, 8, 8));
  // Two groups per node (4 nodes): at most 4, and never fewer than the 2 nodes
  // 4 groups fill at the least.
  EXPECT_LE(ExpectedSlicesHit(dsv3, 4), 4);
  EXPECT_GE(ExpectedSlicesHit(dsv3, 4), 2);
  // 64 ranks of 4 experts, 8 per group: 32 ranks lie in the chosen groups.
  double rank_miss = 1;
  for (int i = 0; i < 8; ++i) rank_miss *= (124.0 - i) / (128.0 - i);
  EXPECT_NEAR(ExpectedSlicesHit(dsv3, 64), 32 * (1 - rank_miss), 1e-12);
  // 3 slices neither tile nor are tiled by 8 groups: the unrestricted count.
  EXPECT_DOUBLE_EQ(ExpectedSlicesHit(ExpertRouting{240, 8, 8, 4}, 3), ExpectedDistinctGroups(240, 3, 8));
  // The DeepEP time follows: fewer nodes, less over the NIC.
  const GroupPath ep64 = GroupPathFor(DgxA100(), 64, 1);
  EXPECT_LT(DeepEpAllToAllSeconds(1e6, dsv3, ep64), DeepEpAllToAllSeconds(1e6, free, ep64));
}

TEST(CommModelTest, SendRecvUsesTheLinkBetweenTheTwoRanks) {
  const Network n = DgxA100();
  const double bytes = 64e6;
  // PP neighbours TP*DP = 4 apart: ranks 0 and 4 share node 0; ranks 4 and 8 do not.
  EXPECT_DOUBLE_EQ(SendRecvSeconds(n, bytes, 0, 4), bytes / (300e9 * 0.8) + 8e-6);
  EXPECT_DOUBLE_EQ(SendRecvSeconds(n, bytes, 4, 4), bytes / (25e9 * 0.9) + 15e-6);
  EXPECT_EQ(SendRecvSeconds(n, 0, 0, 4), 0);
}

// Three tiers (network.h): NVLink domains of 8, leaf switches of 32 GPUs at
// 50 GB/s per GPU, a spine oversubscribed 2:1 (25 GB/s per GPU).
Network ThreeTiers() {
  return {{8, {"nvlink4", 450e9, 0.8, 8e-6}}, {32, {"leaf", 50e9, 0.9, 15e-6}}, {0, {"spine", 25e9, 0.9, 25e-6}}};
}

TEST(CommModelTest, AGroupIsBoundByTheSlowestTierItCrosses) {
  const Network n = ThreeTiers();
  // Inside an NVLink domain: TP 8.
  GroupPath p = GroupPathFor(n, 8, 1);
  EXPECT_EQ(p.tier, 0);
  EXPECT_DOUBLE_EQ(p.bus_bytes_per_s, 450e9 * 0.8);
  // DP 4 at stride 8 (TP 8): 32 GPUs, one leaf: the leaf bounds it.
  p = GroupPathFor(n, 4, 8);
  EXPECT_EQ(p.tier, 1);
  EXPECT_DOUBLE_EQ(p.bus_bytes_per_s, 50e9 * 0.9);
  EXPECT_DOUBLE_EQ(p.latency_s, 15e-6);
  // DP 8 at stride 8: 64 GPUs over two leaves: the spine bounds it.
  p = GroupPathFor(n, 8, 8);
  EXPECT_EQ(p.tier, 2);
  EXPECT_DOUBLE_EQ(p.bus_bytes_per_s, 25e9 * 0.9);
  EXPECT_DOUBLE_EQ(p.latency_s, 25e-6);
  // DP 2 at stride 2 stays in the NVLink domain; DP 16 at stride 2 fills a leaf.
  EXPECT_EQ(GroupPathFor(n, 2, 2).tier, 0);
  EXPECT_EQ(GroupPathFor(n, 16, 2).tier, 1);
  // The two-tier node network is the special case: the same group over nodes
  // of 8 crosses tier 1, the node network.
  EXPECT_EQ(GroupPathFor(DgxA100(), 4, 8).tier, 1);
}

TEST(CommModelTest, TheNvlinkDomainCanHoldManyNodes) {
  // GB200 NVL72: 72 GPUs on NVLink5, trays of 4 GPUs. EP 64 (stride 1) stays on
  // NVLink; a DP group of 2 at stride 64 crosses racks (tier 1, the NIC).
  const Network nvl = NodeNetwork(72, {"nvlink5", 900e9, 0.8, 8e-6}, {"ib-ndr", 50e9, 0.9, 15e-6});
  EXPECT_EQ(GroupPathFor(nvl, 64, 1).tier, 0);
  EXPECT_DOUBLE_EQ(GroupPathFor(nvl, 64, 1).bus_bytes_per_s, 900e9 * 0.8);
  EXPECT_EQ(GroupPathFor(nvl, 2, 64).tier, 1);
  EXPECT_DOUBLE_EQ(SendRecvSeconds(nvl, 1e9, 4, 4), 1e9 / (900e9 * 0.8) + 8e-6);   // tray 1 -> 2
  EXPECT_DOUBLE_EQ(SendRecvSeconds(nvl, 1e9, 68, 4), 1e9 / (50e9 * 0.9) + 15e-6);  // rack 0 -> 1
}

TEST(CommModelTest, SendRecvAndTheRingsSlowestHopUseTheTierBetween) {
  const Network n = ThreeTiers();
  EXPECT_EQ(TierBetween(n, 0, 4), 0);
  EXPECT_EQ(TierBetween(n, 4, 4), 1);   // 4 -> 8: next NVLink domain, same leaf
  EXPECT_EQ(TierBetween(n, 28, 4), 2);  // 28 -> 32: next leaf
  EXPECT_DOUBLE_EQ(SendRecvSeconds(n, 1e9, 28, 4), 1e9 / (25e9 * 0.9) + 25e-6);
  // A ring of 16 members 4 apart spans 64 GPUs (two leaves): its slowest hop
  // leaves the first leaf, from rank 28.
  const GroupPath ring = GroupPathFor(n, 16, 4);
  EXPECT_EQ(ring.tier, 2);
  EXPECT_EQ(SlowestHopRank(n, ring, 4), 28);
  EXPECT_EQ(TierBetween(n, SlowestHopRank(n, ring, 4), 4), ring.tier);
  EXPECT_EQ(SlowestHopRank(n, GroupPathFor(n, 2, 4), 4), 0);  // inside NVLink
}

}  // namespace
}  // namespace p3d
