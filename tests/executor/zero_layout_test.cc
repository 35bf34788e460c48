// ZeRO ownership arithmetic (executor/zero_layout.h) and the parameter units it
// splits (executor/param_layout.h), on CPU.
#include "executor/zero_layout.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "executor/param_layout.h"
#include "executor/train_options.h"
#include "models/zoo.h"

namespace p3d {
namespace {

ParamLayout Layout(const char* id, int64_t unit_align) {
  auto m = ZooModel(id);
  EXPECT_TRUE(m.ok());
  ParallelContext ctx = SingleGpuContext(*m);
  auto s = ShardShape(*m, ctx);
  auto p = BuildParamLayout(*m, ctx, *s, unit_align);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

// Units tile the buffer in order: embedding, one per layer, head; every tensor
// lies inside exactly one unit, and each unit is a multiple of unit_align.
TEST(ParamUnitsTest, UnitsTileTheBufferAndHoldWholeTensors) {
  for (int64_t align : {int64_t{128}, int64_t{4 * 128}}) {
    const ParamLayout p = Layout("gpt2-small", align);
    ASSERT_EQ(p.units.size(), 12u + 2u);
    EXPECT_EQ(p.embedding_unit, 0);
    EXPECT_EQ(p.head_unit, 13);
    EXPECT_EQ(p.LayerUnit(3), 4);
    int64_t end = 0;
    for (const ParamUnit& u : p.units) {
      EXPECT_EQ(u.begin, end);
      EXPECT_EQ(u.size() % align, 0);
      end = u.end;
    }
    EXPECT_EQ(end, p.total);
    for (const ParamTensor& t : p.tensors) {
      const int n = std::count_if(p.units.begin(), p.units.end(), [&](const ParamUnit& u) {
        return t.offset >= u.begin && t.offset + t.size() <= u.end;
      });
      EXPECT_EQ(n, 1) << t.name;
    }
    EXPECT_EQ(p.units[p.LayerUnit(5)].begin, p.layers[5].qkv_w);
  }
  // The single-GPU alignment adds no padding: the layout is unchanged.
  EXPECT_EQ(Layout("gpt2-small", 128).total, Layout("gpt2-small", 128).tensors.back().offset +
                                                 Layout("gpt2-small", 128).tensors.back().size());
  auto m = ZooModel("gpt2-small");
  ParallelContext ctx = SingleGpuContext(*m);
  EXPECT_FALSE(BuildParamLayout(*m, ctx, *ShardShape(*m, ctx), 100).ok());
}

// The DP slices of every unit partition the buffer across ranks; local
// offsets are dense; AdamW segments cover exactly the owned elements with the
// decay flag of the tensor they hold.
TEST(ZeroLayoutTest, SlicesPartitionTheBufferAndSegmentsCoverThem) {
  for (int dp : {1, 2, 4}) {
    const ParamLayout p = Layout("llama-2-7b", dp * kParamAlignElements);
    std::vector<int> owners(p.units.size() * dp, 0);
    int64_t covered = 0;
    for (int r = 0; r < dp; ++r) {
      auto z = BuildZeroLayout(p, 1, dp, r);
      ASSERT_TRUE(z.ok()) << z.status().ToString();
      ASSERT_EQ(z->slices.size(), p.units.size());
      int64_t local = 0;
      for (size_t u = 0; u < p.units.size(); ++u) {
        const OwnedSlice& s = z->slices[u];
        EXPECT_EQ(s.size() * dp, p.units[u].size());
        EXPECT_EQ(s.begin, p.units[u].begin + r * s.size());  // in-place reduce-scatter block
        EXPECT_EQ(s.local, local);
        local += s.size();
        covered += s.size();
      }
      EXPECT_EQ(z->local_numel, local);
      int64_t seg_total = 0;
      for (const AdamSegment& g : z->segments) {
        seg_total += g.end - g.begin;
        for (const ParamTensor& t : p.tensors)
          if (t.offset < g.end && t.offset + t.size() > g.begin) EXPECT_EQ(t.decay, g.decay);
      }
      EXPECT_EQ(seg_total, z->local_numel);
    }
    EXPECT_EQ(covered, p.total);
  }
}

TEST(ZeroLayoutTest, ZeroZeroOwnsEverythingAndRulesAreNamed) {
  const ParamLayout p = Layout("gpt2-small", 2 * kParamAlignElements);
  auto z = BuildZeroLayout(p, 0, 2, 1);
  ASSERT_TRUE(z.ok());
  ASSERT_EQ(z->slices.size(), 1u);
  EXPECT_EQ(z->local_numel, p.total);
  EXPECT_EQ(z->segments.front().local, z->segments.front().begin);
  EXPECT_NE(BuildZeroLayout(p, 4, 2, 0).status().message().find("zero in 0..3"), std::string::npos);
  EXPECT_NE(BuildZeroLayout(p, 1, 2, 2).status().message().find("dp_rank"), std::string::npos);
  const ParamLayout unpadded = Layout("gpt2-small", kParamAlignElements);
  EXPECT_NE(BuildZeroLayout(unpadded, 1, 7, 0).status().message().find("unit%dp"),
            std::string::npos);
}

TEST(TrainOptionsTest, RefusesWhatIsNotImplementedByName) {
  Plan l;
  l.dp = 4;
  l.zero = 3;
  EXPECT_TRUE(CheckRunnable(l).ok());
  l.tp = 2;
  EXPECT_NE(CheckRunnable(l).message().find("rule zero-with-tp/pp"), std::string::npos);
  l.zero = 1;
  l.pp = 2;
  l.vpp = 2;
  l.grad_accum = 4;
  EXPECT_TRUE(CheckRunnable(l).ok());
  l.grad_accum = 3;  // interleaved 1F1B needs m % pp == 0
  EXPECT_NE(CheckRunnable(l).message().find("rule interleave-microbatches"), std::string::npos);
  l.pp = 1;
  EXPECT_NE(CheckRunnable(l).message().find("rule vpp needs pp>1"), std::string::npos);
  l.vpp = 1;
  l.sequence_parallel = true;
  EXPECT_TRUE(CheckRunnable(l).ok());  // dp 4 x tp 2 with SP
  l.tp = 1;
  EXPECT_NE(CheckRunnable(l).message().find("rule sp=>tp>1"), std::string::npos);
  l.sequence_parallel = false;
  l.zero = 5;
  EXPECT_NE(CheckRunnable(l).message().find("zero in 0..3"), std::string::npos);
  l.zero = 0;
  l.dp = 0;
  EXPECT_NE(CheckRunnable(l).message().find("rule dp>=1"), std::string::npos);
  l.dp = 1;
  l.offload = Offload::kOptimizerAndParams;  // from flags as much as from a saved plan
  EXPECT_NE(CheckRunnable(l).message().find("rule offload-params"), std::string::npos);
}

TEST(TrainOptionsTest, SavedPlanSetsModelRecipeAndLayout) {
  SavedPlan saved;
  saved.request.model = *ZooModel("gpt-1.3b");
  saved.request.training.seq = 2048;
  saved.request.training.logits_chunk_tokens = 512;
  saved.plan.dp = 2;
  saved.plan.zero = 2;
  saved.plan.micro_batch = 4;
  saved.plan.grad_accum = 3;
  saved.plan.recompute = Recompute::kSelective;
  TrainOptions o;
  o.plan.tp = 8;  // a flag the saved plan replaces
  ApplySavedPlan(saved, &o);
  EXPECT_EQ(o.model.name, saved.request.model.name);
  EXPECT_EQ(o.plan.micro_batch, 4);
  EXPECT_EQ(o.plan.grad_accum, 3);
  EXPECT_EQ(o.seq, 2048);
  EXPECT_EQ(o.logits_chunk, 512);
  EXPECT_EQ(o.plan.recompute, Recompute::kSelective);
  EXPECT_EQ(o.plan.dp, 2);
  EXPECT_EQ(o.plan.tp, 1);
  EXPECT_EQ(o.plan.zero, 2);
  EXPECT_FALSE(o.plan.sequence_parallel);
  EXPECT_TRUE(CheckRunnable(o.plan).ok());
  saved.plan.tp = 2;
  saved.plan.sequence_parallel = true;
  // ZeRO-2 with TP: refused, naming the executor-support rule.
  ApplySavedPlan(saved, &o);
  EXPECT_NE(CheckRunnable(o.plan).message().find("rule zero-with-tp/pp"), std::string::npos);
  saved.plan.zero = 1;
  ApplySavedPlan(saved, &o);
  EXPECT_TRUE(CheckRunnable(o.plan).ok());
  EXPECT_EQ(o.plan.tp, 2);
  EXPECT_TRUE(o.plan.sequence_parallel);
  saved.plan.offload = Offload::kOptimizer;
  ApplySavedPlan(saved, &o);
  EXPECT_TRUE(CheckRunnable(o.plan).ok());
  EXPECT_EQ(o.plan.offload, Offload::kOptimizer);
  saved.plan.offload = Offload::kOptimizerAndParams;
  ApplySavedPlan(saved, &o);
  EXPECT_NE(CheckRunnable(o.plan).message().find("rule offload-params"), std::string::npos);
}

}  // namespace
}  // namespace p3d
