// Host-side layout logic of the executor (CPU, runs in CI): shard shapes,
// parameter layout and the memory plan.
#include <gtest/gtest.h>

#include "executor/memory_plan.h"
#include "executor/parallel_context.h"
#include "executor/param_layout.h"
#include "models/zoo.h"

namespace p3d {
namespace {

ModelSpec Zoo(const char* id) {
  auto m = ZooModel(id);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

StatusOr<ParamLayout> Layout(const ModelSpec& m) {
  ParallelContext ctx = SingleGpuContext(m);
  P3D_ASSIGN_OR_RETURN(LocalShape s, ShardShape(m, ctx));
  return BuildParamLayout(m, ctx, s);
}

// The layout holds exactly the model's parameters (published.md section 4
// counts, via ModelSpec::TotalParams which the models tests pin to them).
TEST(ParamLayoutTest, CountsEqualTheModelsParameterCount) {
  for (const char* id : {"gpt2-small", "gpt-1.3b", "llama-2-7b", "llama-3-8b", "qwen2-72b"}) {
    const ModelSpec m = Zoo(id);
    auto p = Layout(m);
    ASSERT_TRUE(p.ok()) << id;
    EXPECT_EQ(p->count(), m.TotalParams()) << id;
  }
  EXPECT_EQ(Layout(Zoo("gpt2-small"))->count(), 124439808);  // published.md section 4
}

TEST(ParamLayoutTest, TensorsAreAlignedDisjointAndTiedHeadSharesTheEmbedding) {
  auto p = Layout(Zoo("gpt2-small"));
  ASSERT_TRUE(p.ok());
  int64_t end = 0;
  for (const ParamTensor& t : p->tensors) {
    EXPECT_EQ(t.offset % kParamAlignElements, 0) << t.name;
    EXPECT_GE(t.offset, end) << t.name;
    end = t.offset + t.size();
    EXPECT_EQ(t.decay, t.cols != 0) << t.name;
  }
  EXPECT_LE(end, p->total);
  EXPECT_EQ(p->head, p->wte);
  auto l = Layout(Zoo("llama-2-7b"));
  EXPECT_NE(l->head, l->wte);
  EXPECT_EQ(l->wpe, -1);
  EXPECT_EQ(l->layers[0].norm1_b, -1);
}

TEST(ParamLayoutTest, RefusesMoe) {
  auto p = Layout(Zoo("mixtral-8x7b"));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("dense"), std::string::npos);
}

TEST(ShardShapeTest, TensorParallelDividesHeadsFfnVocabAndNamesTheRule) {
  ModelSpec m = Zoo("llama-2-70b");
  ParallelContext ctx = SingleGpuContext(m);
  ctx.tp = 8;
  auto s = ShardShape(m, ctx);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->heads, 8);
  EXPECT_EQ(s->kv_heads, 1);
  EXPECT_EQ(s->ffn, 28672 / 8);
  ctx.tp = 16;  // 8 kv heads
  s = ShardShape(m, ctx);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("kv_heads % tp"), std::string::npos);
  ctx = SingleGpuContext(m);
  ctx.first_layer = 70;
  ctx.layers = 20;
  EXPECT_NE(ShardShape(m, ctx).status().message().find("layer range"), std::string::npos);
}

TrainingMemoryPlan Plan(const ModelSpec& m, int64_t B, int64_t S, Recompute rc) {
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  auto p = BuildParamLayout(m, ctx, *s);
  auto plan = PlanTrainingMemory(m, *s, *p, {B, S, rc, 0}, 32 << 20);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  return *plan;
}

TEST(MemoryPlanTest, RegionsAreAlignedDisjointAndTermsSumToTheArena) {
  for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    TrainingMemoryPlan p = Plan(Zoo("llama-3-8b"), 1, 1024, rc);
    int64_t end = 0, sum = 0;
    for (const ArenaRegion& r : p.arena.regions()) {
      EXPECT_EQ(r.offset % kArenaAlignBytes, 0) << r.name;
      EXPECT_GE(r.offset, end) << r.name;
      end = r.offset + r.bytes;
    }
    for (int t = 0; t < kRegionTerms; ++t) sum += p.arena.TermBytes(static_cast<RegionTerm>(t));
    EXPECT_EQ(sum, p.arena.total_bytes());
    EXPECT_LE(end, p.arena.total_bytes());
  }
}

// Per-layer stored activations for a GPT shape (F = 4H, KV = NH), bytes:
//   unfused core  none: 32*T*H + 2*B*NH*S^2 + 16*T;  selective: 32*T*H + 16*T;
//   fused core    none and selective: 32*T*H + 4*T*NH + 16*T (qkv in place of
//                 q, k, v; the fp32 lse [B, NH, S] in place of the probabilities);
//   full: 2*T*H.
// (Korthikanti et al. 2022 Table 2 has sbh(34 + 5as/h) for Megatron with
// dropout: 2sbh of dropout masks + as^2b mask bytes + 2as^2b of pre-softmax
// scores that p3d does not keep; the 16T are fp32 LayerNorm statistics.)
TEST(MemoryPlanTest, PerLayerActivationBytesFollowTheDocumentedFormula) {
  const ModelSpec m = Zoo("gpt-1.3b");
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  const int64_t B = 4, S = 2048, T = B * S, H = 2048, NH = 16;
  auto unfused = [&](Recompute rc) {
    TrainingShape t{B, S, rc, 0};
    t.attention = AttentionImpl::kUnfused;
    return t;
  };
  EXPECT_EQ(LayerActivationBytes(m, *s, unfused(Recompute::kNone)),
            32 * T * H + 2 * B * NH * S * S + 16 * T);
  EXPECT_EQ(LayerActivationBytes(m, *s, unfused(Recompute::kSelective)), 32 * T * H + 16 * T);
  EXPECT_EQ(LayerActivationBytes(m, *s, unfused(Recompute::kFull)), 2 * T * H);
  EXPECT_EQ(LayerActivationBytes(m, *s, {B, S, Recompute::kNone, 0}),
            32 * T * H + 4 * T * NH + 16 * T);
  EXPECT_EQ(LayerActivationBytes(m, *s, {B, S, Recompute::kSelective, 0}),
            32 * T * H + 4 * T * NH + 16 * T);
  EXPECT_EQ(LayerActivationBytes(m, *s, {B, S, Recompute::kFull, 0}), 2 * T * H);
  // The arena's activation term is L layers of that plus the final norm and the loss chunk.
  TrainingMemoryPlan p = Plan(m, B, S, Recompute::kSelective);
  const int64_t per_layer = LayerActivationBytes(m, *s, {B, S, Recompute::kSelective, 0});
  const int64_t extra = p.arena.TermBytes(RegionTerm::kActivations) - m.layers * per_layer;
  const int64_t final_and_loss = 2 * (2 * T * H) + 8 * T + 4 * T + p.logits_chunk * p.logits_ld * 6;
  EXPECT_GE(extra, final_and_loss);
  EXPECT_LT(extra, final_and_loss + 64 * kArenaAlignBytes);  // alignment padding only
}

// The fused core's arena: no S x S region at all (probabilities, their
// gradient, the selective scratch), no heads-major copies; a per-layer qkv and
// fp32 lse, and the cuDNN workspace as a buffers region of exactly the
// requested size (TrainingShape::attention_workspace).
TEST(MemoryPlanTest, FusedCoreHasNoScoreRegionsAndHoldsItsWorkspace) {
  const ModelSpec m = Zoo("llama-3-8b");
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  auto p = BuildParamLayout(m, ctx, *s);
  const int64_t B = 1, S = 4096, T = B * S;
  for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    TrainingShape t{B, S, rc, 0};
    t.attention_workspace = 123456789;
    auto plan = PlanTrainingMemory(m, *s, *p, t, 32 << 20);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    int64_t workspace = -1, qkv = 0, lse = 0;
    for (const ArenaRegion& r : plan->arena.regions()) {
      const bool scores_or_copies = r.name.find("probs") != std::string::npos ||
                                    r.name.find("heads") != std::string::npos;
      if (scores_or_copies) EXPECT_EQ(r.bytes, 0) << r.name << " rc=" << RecomputeName(rc);
      if (r.name == "fused attention workspace") {
        workspace = r.bytes;
        EXPECT_EQ(r.term, RegionTerm::kBuffers);
      }
      if (r.name.ends_with(" qkv")) qkv += r.bytes;
      if (r.name.ends_with(" lse (fp32)")) lse += r.bytes;
    }
    EXPECT_EQ(workspace, 123456789);
    // Per layer (or once, recomputed into the shared set under full).
    const int64_t sets = rc == Recompute::kFull ? 1 : m.layers;
    EXPECT_EQ(qkv, sets * T * (m.heads + 2 * m.kv_heads) * m.head_dim() * 2);
    EXPECT_EQ(lse, sets * B * m.heads * S * 4);
  }
}

// Sequence parallelism (Korthikanti et al. 2022 sec. 4.2.2; simulator/
// memory_terms.h LayerActivations): the four [T, H] tensors a layer stores
// (x_in, norm1_out, x_mid, norm2_out) and the norm statistics hold T/TP rows;
// q, k, v, att_out, the MLP tensors and the scores stay [T, .] of the rank's
// heads / F columns. Full recompute keeps x_in: 2*T*H/TP. Plus one [T, H]
// all-gather buffer (the simulator's buffers.tp_buffers = e*T*H).
TEST(MemoryPlanTest, SequenceParallelShardsTheResidualStreamByTp) {
  const ModelSpec m = Zoo("gpt-1.3b");
  ParallelContext ctx = SingleGpuContext(m);
  ctx.tp = 2;
  auto s = ShardShape(m, ctx);
  ASSERT_TRUE(s.ok());
  const int64_t B = 4, S = 2048, T = B * S, H = 2048, NH = 16, tp = 2;
  TrainingShape none{B, S, Recompute::kNone, 0};
  none.sequence_shards = tp;
  none.attention = AttentionImpl::kUnfused;
  // F/TP = 4H/TP; q, att_out = H/TP; k, v = H/TP; mlp_pre, mlp_act = 4H/TP.
  const int64_t split = 2 * T * (H / tp + 2 * H / tp + H / tp + 8 * H / tp);
  EXPECT_EQ(LayerActivationBytes(m, *s, none),
            2 * 4 * T * H / tp + split + 2 * B * (NH / tp) * S * S + 16 * T / tp);
  TrainingShape full = none;
  full.recompute = Recompute::kFull;
  EXPECT_EQ(LayerActivationBytes(m, *s, full), 2 * T * H / tp);

  auto p = BuildParamLayout(m, ctx, *s);
  ASSERT_TRUE(p.ok());
  auto with = PlanTrainingMemory(m, *s, *p, none, 32 << 20);
  TrainingShape plain = none;
  plain.sequence_shards = 1;
  auto without = PlanTrainingMemory(m, *s, *p, plain, 32 << 20);
  ASSERT_TRUE(with.ok() && without.ok());
  int64_t gather = -1;
  for (const ArenaRegion& r : with->arena.regions())
    if (r.name == "sequence-parallel all-gather") gather = r.bytes;
  EXPECT_EQ(gather, 2 * T * H);
  for (const ArenaRegion& r : without->arena.regions())
    EXPECT_FALSE(r.name == "sequence-parallel all-gather" && r.bytes > 0);
  // Stored per layer: none saves 4 x 2*T*H*(1 - 1/TP) + statistics.
  const int64_t saved = without->arena.TermBytes(RegionTerm::kActivations) -
                        with->arena.TermBytes(RegionTerm::kActivations);
  EXPECT_GE(saved, m.layers * (4 * 2 * T * H / tp + 16 * T / tp));

  TrainingShape odd{1, 8, Recompute::kNone, 0};
  odd.sequence_shards = 3;
  auto bad = PlanTrainingMemory(m, *s, *p, odd, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rule tokens % tp"), std::string::npos);
}

TEST(MemoryPlanTest, ParameterStateIs18BytesPerParameter) {
  const ModelSpec m = Zoo("gpt2-small");
  TrainingMemoryPlan p = Plan(m, 1, 256, Recompute::kNone);
  const double per_param = static_cast<double>(p.arena.TermBytes(RegionTerm::kWeights) +
                                               p.arena.TermBytes(RegionTerm::kGradients) +
                                               p.arena.TermBytes(RegionTerm::kOptimizer)) /
                           static_cast<double>(m.TotalParams());
  EXPECT_NEAR(per_param, 18.0, 0.02);  // alignment gaps only
}

TEST(MemoryPlanTest, DefaultCausalBlocksKeepBlocksAtLeast64Positions) {
  EXPECT_EQ(DefaultAttentionBlocks(2048), 4);
  EXPECT_EQ(DefaultAttentionBlocks(256), 4);
  EXPECT_EQ(DefaultAttentionBlocks(128), 2);
  EXPECT_EQ(DefaultAttentionBlocks(64), 1);
  EXPECT_EQ(DefaultAttentionBlocks(200), 1);  // 200/2 = 100 is not a multiple of 8
}

TEST(MemoryPlanTest, ErrorsNameTheRule) {
  const ModelSpec m = Zoo("gpt2-small");
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  auto p = BuildParamLayout(m, ctx, *s);
  auto bad = PlanTrainingMemory(m, *s, *p, {1, 100, Recompute::kNone, 0}, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("seq % 8"), std::string::npos);
  bad = PlanTrainingMemory(m, *s, *p, {1, 2048, Recompute::kNone, 0}, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("max_positions"), std::string::npos);
  bad = PlanTrainingMemory(m, *s, *p, {1, 96, Recompute::kNone, 0, 8}, 0);  // 96/8 = 12
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("attention blocks"), std::string::npos);
}

}  // namespace
}  // namespace p3d
