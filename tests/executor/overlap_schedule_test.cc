// The overlap schedule (executor/overlap_schedule.h) on CPU: which gradient
// buckets exist for a layout and a bucket size, after which unit's backward
// each is launched, and the order of the ZeRO-3 parameter gathers with the
// one-unit-ahead prefetch in forward and backward.
#include "executor/overlap_schedule.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "executor/param_layout.h"
#include "models/zoo.h"

namespace p3d {
namespace {

ParamLayout Layout(const ModelSpec& m, int dp, const ParallelContext& ctx) {
  auto s = ShardShape(m, ctx);
  EXPECT_TRUE(s.ok());
  auto p = BuildParamLayout(m, ctx, *s, dp * kParamAlignElements);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

ParamLayout ZooLayout(const char* id, int dp) {
  auto m = ZooModel(id);
  EXPECT_TRUE(m.ok()) << id;
  return Layout(*m, dp, SingleGpuContext(*m));
}

// tests/executor/models/tiny-gpt2-bytes.json, the DP equivalence model.
ParamLayout TinyBytes(int dp) {
  ModelSpec m = *ZooModel("tiny-gpt");
  m.vocab = 256;
  m.tie_embeddings = true;
  return Layout(m, dp, SingleGpuContext(m));
}

GradBuckets Buckets(const ParamLayout& p, int64_t bytes) {
  auto b = BuildGradBuckets(p, bytes);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return *b;
}

// The unit each bucket is launched after (its last in backward order).
std::vector<int> LaunchPoints(const GradBuckets& b) {
  std::vector<int> after;
  for (const GradBucket& k : b.buckets) after.push_back(k.units.back());
  return after;
}

// What holds for every layout and size: the buckets cut the backward order
// into consecutive runs, in launch order; each is exactly its units' element
// range; a bucket of several units fits the size, and no bucket could have
// taken the next bucket's first unit (greedy).
void ExpectWellFormed(const ParamLayout& p, const GradBuckets& b) {
  const int64_t limit = b.bucket_bytes / 4;
  std::vector<int> flat;
  for (size_t k = 0; k < b.buckets.size(); ++k) {
    const GradBucket& g = b.buckets[k];
    ASSERT_FALSE(g.units.empty());
    int64_t elements = 0;
    for (int u : g.units) {
      flat.push_back(u);
      elements += p.units[u].size();
      EXPECT_EQ(b.unit_bucket[u], static_cast<int>(k));
    }
    EXPECT_EQ(g.begin, p.units[g.units.back()].begin);
    EXPECT_EQ(g.end, p.units[g.units.front()].end);
    EXPECT_EQ(g.size(), elements) << "bucket " << k << " is not contiguous";
    if (g.units.size() > 1) {
      EXPECT_LE(g.size(), limit) << "bucket " << k;
    }
    if (k + 1 < b.buckets.size()) {
      EXPECT_GT(g.size() + p.units[b.buckets[k + 1].units.front()].size(), limit) << "bucket " << k;
    }
  }
  EXPECT_EQ(flat, BackwardUnitOrder(p));
}

TEST(OverlapScheduleTest, BackwardOrderIsHeadLayersDownEmbedding) {
  const ParamLayout p = ZooLayout("gpt2-small", 1);
  std::vector<int> want = {p.head_unit};
  for (int l = 11; l >= 0; --l) want.push_back(p.LayerUnit(l));
  want.push_back(p.embedding_unit);
  EXPECT_EQ(BackwardUnitOrder(p), want);
}

// gpt-1.3b at the default (the simulator's 25 M-element bucket, 100 MB):
// every layer (201 MB) is wider than a bucket, so each unit is a bucket,
// launched right after its own backward: 26 launches, the last after the
// embedding backward.
TEST(OverlapScheduleTest, LayersWiderThanABucketAreBucketsOfTheirOwn) {
  EXPECT_EQ(kDefaultGradBucketBytes, 100'000'000);
  const ParamLayout p = ZooLayout("gpt-1.3b", 2);
  const GradBuckets b = Buckets(p, kDefaultGradBucketBytes);
  ExpectWellFormed(p, b);
  ASSERT_EQ(b.buckets.size(), 26u);
  EXPECT_EQ(LaunchPoints(b), BackwardUnitOrder(p));
}

// tiny-gpt2-bytes: units of 3.2 MB (layers), 1.3 MB (tied embedding), 1 KB
// (head: the final norm). At 7 MB three buckets, launched after layer 2's,
// layer 0's and the embedding's backward; at 100 MB one, after the embedding
// backward; at 1 byte one per unit, after each unit's own backward.
TEST(OverlapScheduleTest, SmallUnitsShareBucketsLaunchedAfterTheirLastUnit) {
  const ParamLayout p = TinyBytes(2);
  const GradBuckets b7 = Buckets(p, 7'000'000);
  ExpectWellFormed(p, b7);
  ASSERT_EQ(b7.buckets.size(), 3u);
  EXPECT_EQ(b7.buckets[0].units, (std::vector<int>{p.head_unit, p.LayerUnit(3), p.LayerUnit(2)}));
  EXPECT_EQ(b7.buckets[1].units, (std::vector<int>{p.LayerUnit(1), p.LayerUnit(0)}));
  EXPECT_EQ(b7.buckets[2].units, (std::vector<int>{p.embedding_unit}));
  EXPECT_EQ(LaunchPoints(b7), (std::vector<int>{p.LayerUnit(2), p.LayerUnit(0), p.embedding_unit}));
  const GradBuckets all = Buckets(p, kDefaultGradBucketBytes);
  ExpectWellFormed(p, all);
  ASSERT_EQ(all.buckets.size(), 1u);
  EXPECT_EQ(all.buckets[0].begin, 0);
  EXPECT_EQ(all.buckets[0].end, p.total);
  EXPECT_EQ(LaunchPoints(all), (std::vector<int>{p.embedding_unit}));
  const GradBuckets each = Buckets(p, 1);
  ExpectWellFormed(p, each);
  EXPECT_EQ(LaunchPoints(each), BackwardUnitOrder(p));
}

TEST(OverlapScheduleTest, EveryLayoutAndSizeIsWellFormed) {
  for (const char* id : {"gpt2-small", "gpt-1.3b", "llama-2-7b", "tiny-gpt", "llama-3-8b"}) {
    for (int64_t bytes : {int64_t{1}, int64_t{1'000'000}, int64_t{25'000'000},
                          kDefaultGradBucketBytes, int64_t{1'000'000'000}, int64_t{1} << 40}) {
      SCOPED_TRACE(std::string(id) + " at " + std::to_string(bytes) + " bytes");
      const ParamLayout p = ZooLayout(id, 4);
      ExpectWellFormed(p, Buckets(p, bytes));
    }
  }
}

// Pipeline stages hold the embedding (first) or the head (last) only: the
// backward order and the buckets leave the absent units out.
TEST(OverlapScheduleTest, PipelineStagesBucketTheirOwnUnits) {
  const ModelSpec m = *ZooModel("gpt2-small");
  for (int stage : {0, 1}) {
    ParallelContext ctx = SingleGpuContext(m);
    ctx.pp = 2;
    ctx.pp_rank = stage;
    ctx.layers = m.layers / 2;
    ctx.first_layer = stage * ctx.layers;
    const ParamLayout p = Layout(m, 2, ctx);
    const std::vector<int> order = BackwardUnitOrder(p);
    EXPECT_EQ(static_cast<int64_t>(order.size()), ctx.layers + 1);
    EXPECT_EQ(order.front(), stage == 1 ? p.head_unit : p.LayerUnit(ctx.layers - 1));
    EXPECT_EQ(order.back(), stage == 0 ? p.embedding_unit : p.LayerUnit(0));
    ExpectWellFormed(p, Buckets(p, 10'000'000));
  }
}

TEST(OverlapScheduleTest, RefusesAnEmptyBucket) {
  const ParamLayout p = TinyBytes(1);
  EXPECT_NE(BuildGradBuckets(p, 0).status().message().find("rule bucket_bytes>0"),
            std::string::npos);
}

// ZeRO-3: the forward uses embedding, layers 0..L-1, head; the backward
// layers L-1..0. Gathers are issued in use order, each unit once per pass,
// the first two before the first unit computes and then one ahead: before
// unit i computes, unit i+1 is issued.
TEST(OverlapScheduleTest, Zero3GathersPrefetchOneUnitAheadInUseOrder) {
  const ParamLayout p = ZooLayout("gpt2-small", 2);
  const GatherPass fwd = BuildGatherPass(p, Pass::kForward);
  std::vector<int> want = {p.embedding_unit};
  for (int l = 0; l < 12; ++l) want.push_back(p.LayerUnit(l));
  want.push_back(p.head_unit);
  EXPECT_EQ(fwd.order, want);
  ASSERT_EQ(fwd.issue.size(), want.size());
  EXPECT_EQ(fwd.issue[0], (std::vector<int>{p.embedding_unit, p.LayerUnit(0)}));
  EXPECT_EQ(fwd.issue[1], (std::vector<int>{p.LayerUnit(1)}));
  EXPECT_EQ(fwd.issue[12], (std::vector<int>{p.head_unit}));
  EXPECT_TRUE(fwd.issue[13].empty());
  const GatherPass bwd = BuildGatherPass(p, Pass::kBackward);
  std::vector<int> layers_down;
  for (int l = 11; l >= 0; --l) layers_down.push_back(p.LayerUnit(l));
  EXPECT_EQ(bwd.order, layers_down);
  EXPECT_EQ(bwd.issue[0], (std::vector<int>{p.LayerUnit(11), p.LayerUnit(10)}));
  EXPECT_TRUE(bwd.issue.back().empty());
  for (const GatherPass* g : {&fwd, &bwd}) {
    std::vector<int> issued;
    for (size_t i = 0; i < g->order.size(); ++i) {
      issued.insert(issued.end(), g->issue[i].begin(), g->issue[i].end());
      // Unit i was issued before it computes, and nothing beyond unit i+1.
      ASSERT_GT(issued.size(), i);
      EXPECT_EQ(issued.size(), std::min(i + 2, g->order.size()));
    }
    EXPECT_EQ(issued, g->order);  // each unit gathered once, in use order
  }
}

}  // namespace
}  // namespace p3d
