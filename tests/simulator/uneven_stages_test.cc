// Uneven pipeline stages (Plan::first_stage_layers / last_stage_layers) in
// the memory and time models: every stage's layers, parameters and stored
// activations against hand-computed numbers, a middle stage as the memory
// peak, and per-rank forward times that follow the layer counts. Then the
// embedding/loss split accounting (Plan::account_for_embedding /
// account_for_loss, Megatron-Core's --account-for-embedding/loss-in-pipeline-split):
// every chunk's layers against Megatron-Core's get_num_layers_to_build, the
// split rules with a bad case each, and per-chunk forward times.
#include <gtest/gtest.h>

#include "simulator/compute_model.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

// A Llama-style toy: H 1024, F 4096, 8 heads (no GQA), V 4096, 10 layers.
ModelSpec Toy() {
  return ModelSpec{.name = "toy-10l",
                   .arch = Arch::kLlama,
                   .layers = 10,
                   .hidden = 1024,
                   .ffn = 4096,
                   .heads = 8,
                   .kv_heads = 8,
                   .vocab = 4096,
                   .max_positions = 1024};
}

TrainingSpec Recipe() {
  TrainingSpec t;
  t.seq = 1024;
  t.global_batch = 8;
  return t;
}

// PP 4 with first = 1, last = 3: the two middle stages share 10 - 4 = 6.
Plan Split1333() {
  Plan p;
  p.pp = 4;
  p.micro_batch = 1;
  p.grad_accum = 8;
  p.first_stage_layers = 1;
  p.last_stage_layers = 3;
  return p;
}

TEST(UnevenStages, StageLayersFollowMegatron) {
  const Plan p = Split1333();
  ASSERT_EQ(PipelineSplitRule(p, 10), nullptr);
  EXPECT_EQ(StageLayers(p, 10, 0), 1);
  EXPECT_EQ(StageLayers(p, 10, 1), 3);
  EXPECT_EQ(StageLayers(p, 10, 2), 3);
  EXPECT_EQ(StageLayers(p, 10, 3), 3);
  EXPECT_EQ(StageLayersSummary(p, 10), "1,3x2,3");
  // Llama-3.1-405B on PP 16 (the split the search picks, planner/stage_split.h).
  Plan l405;
  l405.pp = 16;
  l405.first_stage_layers = l405.last_stage_layers = 7;
  EXPECT_EQ(StageLayers(l405, 126, 1), 8);
  EXPECT_EQ(StageLayersSummary(l405, 126), "7,8x14,7");
  // Only the last set: the first stage is a middle one (BLOOM-176B on PP 12).
  Plan bloom;
  bloom.pp = 12;
  bloom.last_stage_layers = 4;
  EXPECT_EQ(StageLayers(bloom, 70, 0), 6);
  EXPECT_EQ(StageLayersSummary(bloom, 70), "6x11,4");
  Plan even;
  even.pp = 5;
  EXPECT_EQ(StageLayersSummary(even, 10), "2x5");
}

TEST(UnevenStages, MemoryPerStageByHand) {
  const ModelSpec m = Toy();
  const TrainingSpec t = Recipe();
  ClusterSpec c;
  c.gpu.memory_bytes = 80.0 * (1 << 30);
  const Plan p = Split1333();
  // One layer: q, k, v, o 4*H^2 = 4,194,304; gate, up, down 3*H*F =
  // 12,582,912; two RMSNorms 2*H = 2,048: 16,779,264 parameters.
  const double layer = 16779264;
  // Stored per layer per micro-batch (bf16, fused core, no recompute):
  // 2*B*S*H*4 (norm and GEMM inputs) = 8,388,608; 2*B*S*(2H + 2H + 3F) (q, k,
  // v, attention output, MLP intermediates) = 33,554,432; fp32 row
  // log-sum-exp 4*B*S*NH = 32,768: 41,975,808 bytes.
  const double stored = 41975808;
  // 1F1B with m = 8 on PP 4: stage r holds min(8, 4 - r) micro-batches.
  struct Expected {
    int64_t layers;
    double params;  // embedding V*H = 4,194,304 on stage 0; head V*H + final norm H on stage 3
    double in_flight;
  };
  const Expected want[4] = {{1, layer + 4194304, 4},
                            {3, 3 * layer, 3},
                            {3, 3 * layer, 2},
                            {3, 3 * layer + 4194304 + 1024, 1}};
  for (int r = 0; r < 4; ++r) {
    const StageMemoryDetail d = StageMemoryDetails(m, t, c, p, r);
    EXPECT_EQ(d.layers, want[r].layers) << "stage " << r;
    EXPECT_EQ(d.params.total(), want[r].params) << "stage " << r;
    EXPECT_EQ(d.memory.weights, 2 * want[r].params) << "stage " << r;
    EXPECT_EQ(d.memory.optimizer, 12 * want[r].params) << "stage " << r;
    EXPECT_EQ(d.in_flight, want[r].in_flight) << "stage " << r;
    EXPECT_EQ(d.layer_activations, stored * want[r].layers * want[r].in_flight) << "stage " << r;
  }
  // Stage 1 stores 9 layer-micro-batches (stage 0: 4, stage 3: 3) and holds
  // 3 layers of state: a middle stage is the peak, and the fast peak finds it.
  const MemoryEstimate est = EstimateMemory(m, t, c, p);
  EXPECT_EQ(est.peak_stage, 1);
  int peak = -1;
  const MemoryBreakdown fast = PeakStageMemory(m, t, c, p, &peak);
  EXPECT_EQ(peak, 1);
  EXPECT_EQ(fast.total(), est.peak().total());
}

TEST(UnevenStages, ForwardTimePerRankFollowsItsLayers) {
  const ModelSpec m = Toy();
  const TrainingSpec t = Recipe();
  ClusterSpec c = CatalogCluster("h100-sxm").value();
  c.num_gpus = 4;
  Plan p = Split1333();
  auto e = EstimateTime(m, t, c, p);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  TimeModel tm(m, t, c);
  auto with_timeline = tm.Evaluate(p, /*with_timeline=*/true);
  ASSERT_TRUE(with_timeline.ok());
  // TP 1: a chunk's forward is its layers' kernels, plus the embedding on
  // rank 0 and the final norm, head and loss on rank 3.
  const ComputeShape shape{.tp = 1, .micro_batch = 1};
  const double layer = LayerKernels(m, LayerKind{}, t, c.gpu, shape).forward.total();
  const EdgeKernelTimes edge = EdgeKernels(m, t, c.gpu, shape);
  const double want[4] = {layer + edge.embedding_forward.total(), 3 * layer, 3 * layer,
                          3 * layer + edge.head_forward.total()};
  int seen[4] = {0, 0, 0, 0};
  for (const TimelineEvent& ev : with_timeline->timeline) {
    if (ev.kind != TimelineKind::kForward) continue;
    EXPECT_NEAR(ev.end_s - ev.start_s, want[ev.rank], 1e-12 * want[ev.rank]) << "rank " << ev.rank;
    ++seen[ev.rank];
  }
  for (int r = 0; r < 4; ++r) EXPECT_EQ(seen[r], 8) << "rank " << r;
  // The busiest rank is a 3-layer one, never rank 0 (1 layer + embedding).
  EXPECT_NE(e->critical_stage, 0);
  // An illegal split is refused by name.
  p.last_stage_layers = 4;  // 5 layers over 2 middle stages
  auto bad = EstimateTime(m, t, c, p);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rule middle%stages"), std::string::npos)
      << bad.status().message();
}

Plan Accounted(int pp, int vpp, bool embedding = true, bool loss = true) {
  Plan p;
  p.pp = pp;
  p.vpp = vpp;
  p.micro_batch = 1;
  p.grad_accum = 8;
  p.account_for_embedding = embedding;
  p.account_for_loss = loss;
  return p;
}

TEST(AccountedSplit, ChunkLayersFollowMegatron) {
  // Llama-3.1-405B on PP 8 x VPP 8 (Megatron-Bridge's recipe): 128 / 64 = 2
  // per chunk; virtual stage 0 holds the embedding + 1 layer, 63 1 layer + the loss.
  const Plan l405 = Accounted(8, 8);
  ASSERT_EQ(PipelineSplitRule(l405, 126), nullptr);
  int64_t total = 0;
  for (int v = 0; v < 64; ++v) {
    EXPECT_EQ(ChunkLayers(l405, 126, v), v == 0 || v == 63 ? 1 : 2) << "virtual stage " << v;
    total += ChunkLayers(l405, 126, v);
  }
  EXPECT_EQ(total, 126);
  EXPECT_EQ(StageLayers(l405, 126, 0), 15);
  EXPECT_EQ(StageLayers(l405, 126, 3), 16);
  EXPECT_EQ(StageLayers(l405, 126, 7), 15);
  EXPECT_EQ(StageLayersSummary(l405, 126), "15,16x6,15");
  EXPECT_NE(PlanSummary(l405).find("account=embedding,loss"), std::string::npos) << PlanSummary(l405);
  // Qwen3-235B on PP 32 x VPP 3: 96 / 96 = 1, so the first virtual stage
  // holds the embedding alone and the last the loss alone (Megatron asserts >= 0).
  const Plan qwen = Accounted(32, 3);
  ASSERT_EQ(PipelineSplitRule(qwen, 94), nullptr);
  EXPECT_EQ(ChunkLayers(qwen, 94, 0), 0);
  EXPECT_EQ(ChunkLayers(qwen, 94, 95), 0);
  EXPECT_EQ(ChunkLayers(qwen, 94, 32), 1);
  EXPECT_EQ(StageLayersSummary(qwen, 94), "2,3x30,2");
  // The embedding alone: 7 + 1 over PP 4 x VPP 2; the last stage is a full one.
  const Plan emb = Accounted(4, 2, true, false);
  ASSERT_EQ(PipelineSplitRule(emb, 7), nullptr);
  EXPECT_EQ(ChunkLayers(emb, 7, 0), 0);
  EXPECT_EQ(ChunkLayers(emb, 7, 7), 1);
  EXPECT_EQ(StageLayersSummary(emb, 7), "1,2x2,2");
  EXPECT_NE(PlanSummary(emb).find("account=embedding"), std::string::npos);
  // Without accounting the chunks are StageLayers / VPP, as before.
  Plan even = Accounted(4, 2, false, false);
  EXPECT_EQ(ChunkLayers(even, 16, 5), 2);
}

TEST(AccountedSplit, RulesNameTheBrokenConstraint) {
  std::string why;
  // 126 + 2 = 128 over PP 8 x VPP 3 = 24.
  EXPECT_STREQ(PipelineSplitRule(Accounted(8, 3), 126, &why), "(layers+edges)%(pp*vpp)");
  EXPECT_NE(why.find("128 are not divisible by PP8 x VPP3"), std::string::npos) << why;
  // Without the loss, 127 do not divide over PP 8.
  EXPECT_STREQ(PipelineSplitRule(Accounted(8, 1, true, false), 126), "(layers+edges)%(pp*vpp)");
  EXPECT_STREQ(PipelineSplitRule(Accounted(1, 1), 126, &why), "account=>pp>1");
  Plan both = Accounted(16, 1);
  both.first_stage_layers = 7;
  EXPECT_STREQ(PipelineSplitRule(both, 126, &why), "account=>even");
  EXPECT_NE(why.find("exclude each other"), std::string::npos) << why;
}

// The toy's 10 layers on PP 4 x VPP 3 with both accounted: 12 / 12 = 1 per
// chunk, so virtual stage 0 runs the embedding alone and 11 the head alone.
TEST(AccountedSplit, MemoryAndForwardTimeFollowTheChunks) {
  const ModelSpec m = Toy();
  TrainingSpec t;
  t.seq = 1024;
  t.global_batch = 8;
  ClusterSpec c = CatalogCluster("h100-sxm").value();
  c.num_gpus = 4;
  const Plan p = Accounted(4, 3);
  const int64_t want_layers[4] = {2, 3, 3, 2};
  const MemoryEstimate mem = EstimateMemory(m, t, c, p);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(mem.stages[r].layers, want_layers[r]) << "stage " << r;
  TimeModel tm(m, t, c);
  auto e = tm.Evaluate(p, /*with_timeline=*/true);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const ComputeShape shape{.tp = 1, .micro_batch = 1};
  const double layer = LayerKernels(m, LayerKind{}, t, c.gpu, shape).forward.total();
  const EdgeKernelTimes edge = EdgeKernels(m, t, c.gpu, shape);
  int seen = 0;
  for (const TimelineEvent& ev : e->timeline) {
    if (ev.kind != TimelineKind::kForward) continue;
    const int v = ev.chunk * 4 + ev.rank;
    const double want = v == 0 ? edge.embedding_forward.total() : v == 11 ? edge.head_forward.total() : layer;
    EXPECT_NEAR(ev.end_s - ev.start_s, want, 1e-12 * want) << "virtual stage " << v;
    ++seen;
  }
  EXPECT_EQ(seen, 12 * 8);
  // An illegal split is refused by name.
  auto bad = EstimateTime(m, t, c, Accounted(4, 2));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rule (layers+edges)%(pp*vpp)"), std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace p3d
