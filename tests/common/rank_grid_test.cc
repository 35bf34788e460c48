#include "common/rank_grid.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <tuple>

namespace p3d {
namespace {

using Groups = std::vector<std::vector<int>>;

RankGrid MustCreate(int tp, int dp, int pp, int gpus_per_node) {
  auto grid = RankGrid::Create(tp, dp, pp, gpus_per_node);
  if (!grid.ok()) {
    ADD_FAILURE() << grid.status().ToString();
    return *RankGrid::Create(1, 1, 1, 1);
  }
  return *grid;
}

// The worked example of rank_grid.h (16 GPUs, 2 nodes of 8, TP2 DP4 PP2),
// written out by hand in the style of Megatron's parallel_state.py docstring.
TEST(RankGridTest, WorkedExampleSixteenRanks) {
  const RankGrid g = MustCreate(2, 4, 2, 8);
  EXPECT_EQ(g.world_size(), 16);
  EXPECT_EQ(g.num_nodes(), 2);
  EXPECT_EQ(g.AllGroups(GroupKind::kTensor),
            (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(g.AllGroups(GroupKind::kData),
            (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}));
  EXPECT_EQ(g.AllGroups(GroupKind::kPipeline),
            (Groups{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}}));
  EXPECT_EQ(g.AllGroups(GroupKind::kModel),
            (Groups{{0, 1, 8, 9}, {2, 3, 10, 11}, {4, 5, 12, 13}, {6, 7, 14, 15}}));
  EXPECT_EQ(g.Coords(11), (RankCoords{1, 1, 1}));
  EXPECT_EQ(g.PipelineNext(3), 11);
  EXPECT_EQ(g.PipelinePrev(11), 3);
  EXPECT_EQ(g.PipelinePrev(3), -1);
  EXPECT_EQ(g.PipelineNext(11), -1);
  EXPECT_EQ(g.PipelineNext(11, /*wrap=*/true), 3);
  EXPECT_EQ(g.PipelinePrev(3, /*wrap=*/true), 11);
  EXPECT_TRUE(g.IsFirstStage(7));
  EXPECT_FALSE(g.IsLastStage(7));
  EXPECT_TRUE(g.IsLastStage(8));
  EXPECT_EQ(g.Node(7), 0);
  EXPECT_EQ(g.Node(8), 1);
  EXPECT_EQ(g.LocalRank(13), 5);
  EXPECT_EQ(g.ToString(), "TP2 DP4 PP2 (16 ranks, 2 nodes of 8)");
}

TEST(RankGridTest, SplitArgsMatchGroupOrder) {
  const RankGrid g = MustCreate(2, 4, 2, 8);
  // Rank 13 = tp 1, dp 2, pp 1.
  EXPECT_EQ(g.SplitOf(GroupKind::kTensor, 13).color, 2 + 4 * 1);
  EXPECT_EQ(g.SplitOf(GroupKind::kTensor, 13).key, 1);
  EXPECT_EQ(g.SplitOf(GroupKind::kData, 13).key, 2);
  EXPECT_EQ(g.SplitOf(GroupKind::kPipeline, 13).key, 1);
  EXPECT_EQ(g.SplitOf(GroupKind::kModel, 13).color, 2);
}

// Properties over many layouts: each kind's groups partition the world, each
// rank is in exactly one group of each kind, the split colour of every
// member equals its group's index, and its key equals its position.
TEST(RankGridTest, GroupsPartitionTheWorld) {
  const std::vector<std::tuple<int, int, int, int>> layouts = {
      {1, 1, 1, 1}, {2, 1, 1, 8}, {1, 4, 1, 8}, {1, 1, 4, 8}, {2, 2, 2, 8},
      {4, 2, 4, 8}, {8, 3, 2, 8}, {2, 3, 5, 2}, {1, 6, 1, 2}, {4, 1, 3, 4}};
  for (const auto& [tp, dp, pp, gpn] : layouts) {
    SCOPED_TRACE(testing::Message() << "TP" << tp << " DP" << dp << " PP" << pp);
    const RankGrid g = MustCreate(tp, dp, pp, gpn);
    for (GroupKind kind :
         {GroupKind::kTensor, GroupKind::kData, GroupKind::kPipeline, GroupKind::kModel}) {
      const Groups groups = g.AllGroups(kind);
      ASSERT_EQ(static_cast<int>(groups.size()), g.NumGroups(kind));
      std::map<int, int> seen;  // rank -> times seen
      for (int color = 0; color < static_cast<int>(groups.size()); ++color) {
        ASSERT_EQ(static_cast<int>(groups[color].size()), g.GroupSize(kind));
        for (int key = 0; key < static_cast<int>(groups[color].size()); ++key) {
          const int r = groups[color][key];
          ++seen[r];
          EXPECT_EQ(g.SplitOf(kind, r).color, color);
          EXPECT_EQ(g.SplitOf(kind, r).key, key);
          EXPECT_EQ(g.GroupMembers(kind, r), groups[color]);
        }
      }
      ASSERT_EQ(static_cast<int>(seen.size()), g.world_size());
      for (const auto& [rank, times] : seen) EXPECT_EQ(times, 1) << "rank " << rank;
      // Evenly strided kinds: consecutive members are Stride(kind) ranks apart.
      if (kind == GroupKind::kModel) {
        EXPECT_EQ(g.Stride(kind), -1);
        continue;
      }
      for (const std::vector<int>& members : groups)
        for (size_t k = 1; k < members.size(); ++k)
          EXPECT_EQ(members[k] - members[k - 1], g.Stride(kind));
    }
    for (int r = 0; r < g.world_size(); ++r) {
      EXPECT_EQ(g.RankOf(g.Coords(r)), r);
      const RankCoords c = g.Coords(r);
      EXPECT_EQ(r, c.tp + tp * (c.dp + dp * c.pp));  // the documented formula
      // TP groups never straddle nodes.
      for (int m : g.GroupMembers(GroupKind::kTensor, r)) EXPECT_EQ(g.Node(m), g.Node(r));
      // Walking next from the first stage visits the whole pipeline group.
      if (g.IsFirstStage(r)) {
        std::vector<int> walk;
        for (int x = r; x != -1; x = g.PipelineNext(x)) walk.push_back(x);
        EXPECT_EQ(walk, g.GroupMembers(GroupKind::kPipeline, r));
        EXPECT_TRUE(g.IsLastStage(walk.back()));
      }
    }
  }
}

TEST(RankGridTest, RejectsInvalidLayoutsNamingTheRule) {
  struct Case {
    int tp, dp, pp, gpn;
    const char* rule;
  };
  for (const Case& c :
       {Case{0, 1, 1, 8, "rule tp>=1"}, Case{1, -1, 1, 8, "rule dp>=1"},
        Case{1, 1, 0, 8, "rule pp>=1"}, Case{1, 1, 1, 0, "rule gpus_per_node>=1"},
        Case{1, 3, 4, 8, "rule world%gpus_per_node"}, Case{4, 3, 1, 6, "rule tp-within-node"}}) {
    auto grid = RankGrid::Create(c.tp, c.dp, c.pp, c.gpn);
    ASSERT_FALSE(grid.ok()) << c.rule;
    EXPECT_NE(grid.status().message().find(c.rule), std::string::npos) << grid.status().message();
  }
  // A single partial node is fine: 2 ranks on an 8-GPU node.
  EXPECT_TRUE(RankGrid::Create(2, 1, 1, 8).ok());
}

// The planner's groups with context parallel and hybrid sharding, from the
// coordinates of rank = tp + TP*(cp + CP*(dp + DP*pp)), or with the tp-pp-dp
// placement rank = tp + TP*(pp + PP*dp): each span run from the group's
// lowest rank lists exactly the ranks whose coordinates put them in that
// group (common/rank_grid.h's worked examples among the layouts).
TEST(RankGridTest, PlanGroupSpansMatchTheCoordinates) {
  constexpr Placement kDefault = Placement::kDpBeforePp, kPpFirst = Placement::kPpBeforeDp;
  const std::vector<std::tuple<int, int, int, int, int, Placement>> layouts = {  // tp, cp, dp, pp, shard
      {2, 2, 4, 1, 4, kDefault}, {1, 4, 2, 2, 0, kDefault}, {8, 2, 4, 2, 2, kDefault}, {2, 1, 8, 1, 4, kDefault},
      {4, 4, 1, 1, 0, kDefault}, {2, 1, 4, 2, 0, kPpFirst},  {2, 1, 8, 4, 2, kPpFirst},  {1, 1, 4, 8, 0, kPpFirst}};
  for (const auto& [tp, cp, dp, pp, shard, placement] : layouts) {
    SCOPED_TRACE(testing::Message() << "TP" << tp << " CP" << cp << " DP" << dp << " PP" << pp
                                    << " shard" << shard << " " << PlacementName(placement));
    Plan plan;
    plan.tp = tp, plan.cp = cp, plan.dp = dp, plan.pp = pp, plan.zero_shard = shard, plan.placement = placement;
    const int world = tp * cp * dp * pp, z = shard > 0 ? shard : dp * cp;
    struct C {
      int t, c, d, p, g;  // g: index in the DP x CP gradient group
    };
    auto coords = [&](int r) {
      C x = placement == kDefault ? C{r % tp, (r / tp) % cp, (r / (tp * cp)) % dp, r / (tp * cp * dp), 0}
                                  : C{r % tp, 0, r / (tp * pp), (r / tp) % pp, 0};
      x.g = x.c + cp * x.d;
      return x;
    };
    using Same = std::function<bool(const C&, const C&)>;
    const std::pair<PlanGroup, Same> kinds[] = {
        {PlanGroup::kContext, [](const C& a, const C& b) { return a.t == b.t && a.d == b.d && a.p == b.p; }},
        {PlanGroup::kGradient, [](const C& a, const C& b) { return a.t == b.t && a.p == b.p; }},
        {PlanGroup::kShard,
         [&](const C& a, const C& b) { return a.t == b.t && a.p == b.p && a.g / z == b.g / z; }},
        {PlanGroup::kReplica,
         [&](const C& a, const C& b) { return a.t == b.t && a.p == b.p && a.g % z == b.g % z; }},
        {PlanGroup::kPipeline, [](const C& a, const C& b) { return a.t == b.t && a.c == b.c && a.d == b.d; }}};
    for (const auto& [kind, same] : kinds) {
      const GroupSpan span = PlanGroupSpan(kind, plan);
      for (int r = 0; r < world; ++r) {
        std::vector<int> want;
        for (int o = 0; o < world; ++o)
          if (same(coords(r), coords(o))) want.push_back(o);
        std::vector<int> got;
        for (int k = 0; k < span.size; ++k) got.push_back(want.front() + k * span.stride);
        EXPECT_EQ(got, want) << "rank " << r << " group " << static_cast<int>(kind);
      }
    }
  }
}

}  // namespace
}  // namespace p3d
