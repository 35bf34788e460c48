// Properties of the memory model that must hold for every plan
// (simulator/memory_model.h): monotonicity, consistency between the per-stage
// estimate, the fast peak and the explanation, and exact parameter bookkeeping.
#include <gtest/gtest.h>

#include <numeric>

#include "common/units.h"
#include "models/zoo.h"
#include "simulator/memory_model.h"

namespace p3d {
namespace {

ModelSpec Llama70B() {  // published.md sec. 4: GQA, SwiGLU, untied
  return ZooModel("llama-2-70b").value();
}

ModelSpec Gpt2Xl() {  // tied, learned positions, biases
  return ZooModel("gpt2-xl").value();
}

ModelSpec Mixtral() {
  return ZooModel("mixtral-8x7b").value();
}

ClusterSpec Cluster() {
  ClusterSpec c;
  c.gpu.memory_bytes = 80 * kGiB;
  c.gpu.runtime = {.cuda_context_bytes = 0.5 * kGiB, .nccl_per_comm_bytes = 0.25 * kGiB, .allocator_fraction = 0.08};
  return c;
}

// The pipeline splits of `pp` x `vpp` tried here: the even one when legal,
// and the first legal uneven one (first = last, else first alone, smallest
// count first) that differs from it.
std::vector<std::pair<int, int>> Splits(const ModelSpec& m, int pp, int vpp) {
  std::vector<std::pair<int, int>> out;
  Plan p;
  p.pp = pp;
  p.vpp = vpp;
  if (PipelineSplitRule(p, m.layers) == nullptr) out.push_back({0, 0});
  for (int first = 1; first <= m.layers; ++first) {
    for (int last : {first, 0}) {
      p.first_stage_layers = first;
      p.last_stage_layers = last;
      if (PipelineSplitRule(p, m.layers) != nullptr || StageLayers(p, m.layers, pp / 2) == first) continue;
      out.push_back({first, last});
      return out;
    }
  }
  return out;
}

// A spread of legal-looking plans (rules are the planner's business; here
// only the preconditions in memory_model.h matter), including uneven stages.
std::vector<Plan> Plans(const ModelSpec& m) {
  std::vector<Plan> out;
  for (int tp : {1, 8}) {
    if (m.heads % tp != 0 || m.kv_heads % tp != 0) continue;
    for (int pp : {1, 3, 4, 16}) {
      for (int vpp : {1, 2}) {
        if (vpp > 1 && pp == 1) continue;
        for (auto [first, last] : Splits(m, pp, vpp))
        for (int dp : {1, 4}) {
          for (int zero = 0; zero <= (dp > 1 ? 3 : 0); ++zero) {
            for (int64_t mb : {1, 2}) {
              for (int64_t ga : {1, 5, 32}) {
                for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
                  for (bool sp : {false, true}) {
                    if (sp && tp == 1) continue;
                    Plan p;
                    p.dp = dp;
                    p.tp = tp;
                    p.pp = pp;
                    p.vpp = vpp;
                    p.zero = zero;
                    p.micro_batch = mb;
                    p.grad_accum = ga;
                    p.recompute = rc;
                    p.sequence_parallel = sp;
                    p.first_stage_layers = first;
                    p.last_stage_layers = last;
                    out.push_back(p);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

std::vector<ModelSpec> Models() { return {Llama70B(), Gpt2Xl(), Mixtral()}; }

TrainingSpec Training(const ModelSpec& m, bool dropout = false) {
  TrainingSpec t;
  t.seq = std::min<int64_t>(2048, m.max_positions);
  t.dropout = dropout;
  return t;
}

bool SameBreakdown(const MemoryBreakdown& a, const MemoryBreakdown& b) {
  return a.weights == b.weights && a.gradients == b.gradients && a.optimizer == b.optimizer &&
         a.activations == b.activations && a.buffers == b.buffers && a.runtime == b.runtime;
}

TEST(MemoryProperties, PeakStageMemoryEqualsEstimatePeakExactly) {
  const ClusterSpec c = Cluster();
  int checked = 0, last_stage_peaks = 0, middle_stage_peaks = 0;
  for (const ModelSpec& m : Models()) {
    for (bool dropout : {false, true}) {
      const TrainingSpec t = Training(m, dropout);
      for (const Plan& p : Plans(m)) {
        MemoryEstimate est = EstimateMemory(m, t, c, p);
        ASSERT_EQ(est.stages.size(), static_cast<size_t>(p.pp));
        int peak = -1;
        MemoryBreakdown fast = PeakStageMemory(m, t, c, p, &peak);
        ASSERT_EQ(peak, est.peak_stage) << PlanSummary(p);
        ASSERT_TRUE(SameBreakdown(fast, est.peak())) << PlanSummary(p);
        for (const StageMemory& s : est.stages) ASSERT_LE(s.memory.total(), fast.total());
        last_stage_peaks += peak == p.pp - 1 && p.pp > 1;
        middle_stage_peaks += peak > 0 && peak < p.pp - 1;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 1000);
  EXPECT_GT(last_stage_peaks, 0);    // every candidate actually occurs
  EXPECT_GT(middle_stage_peaks, 0);  // (a middle stage only with uneven stages)
}

TEST(MemoryProperties, ModelStatesNeverRiseWithZeroStage) {
  const ClusterSpec c = Cluster();
  for (const ModelSpec& m : Models()) {
    const TrainingSpec t = Training(m);
    for (Plan p : Plans(m)) {
      if (p.dp == 1 || p.zero != 0) continue;
      for (int r = 0; r < p.pp; r += std::max(1, p.pp - 1)) {  // first and last stage
        double previous = 0;
        for (int zero = 0; zero <= 3; ++zero) {
          p.zero = zero;
          MemoryBreakdown b = StageMemoryDetails(m, t, c, p, r).memory;
          const double states = b.weights + b.gradients + b.optimizer;
          // Strictly falls: every ZeRO stage shards one more term over DP > 1.
          if (zero > 0) EXPECT_LT(states, previous) << PlanSummary(p) << " stage " << r;
          previous = states;
        }
        p.zero = 0;
      }
    }
  }
}

TEST(MemoryProperties, ActivationsNeverFallAsMicroBatchRises) {
  const ClusterSpec c = Cluster();
  for (const ModelSpec& m : Models()) {
    const TrainingSpec t = Training(m, true);
    for (Plan p : Plans(m)) {
      if (p.micro_batch != 1) continue;
      // Fixed grad_accum, and fixed global batch (grad_accum shrinks).
      for (bool fixed_global : {false, true}) {
        const int64_t samples = p.grad_accum * 8;
        std::vector<double> previous(p.pp, 0.0);
        for (int64_t mb : {1, 2, 4, 8}) {
          Plan q = p;
          q.micro_batch = mb;
          if (fixed_global) q.grad_accum = samples / mb;
          if (q.vpp > 1 && q.grad_accum % q.pp != 0) continue;
          for (int r = 0; r < q.pp; ++r) {
            const double a = StageMemoryDetails(m, t, c, q, r).memory.activations;
            EXPECT_GE(a, previous[r])
                << PlanSummary(q) << " stage " << r << " fixed_global=" << fixed_global;
            previous[r] = a;
          }
        }
      }
    }
  }
}

TEST(MemoryProperties, TermsSumToTheBreakdownAndExplainAgrees) {
  const ClusterSpec c = Cluster();
  for (const ModelSpec& m : Models()) {
    const TrainingSpec t = Training(m, true);
    for (const Plan& p : Plans(m)) {
      for (int r : {0, p.pp / 2, p.pp - 1}) {
        StageMemoryDetail d = StageMemoryDetails(m, t, c, p, r);
        const MemoryBreakdown& b = d.memory;
        EXPECT_DOUBLE_EQ(b.activations, d.layer_activations + d.recompute_working +
                                            d.embedding_activations + d.loss_activations);
        EXPECT_DOUBLE_EQ(b.buffers, d.zero3_gather + d.grad_buckets + d.pp_buffers + d.tp_buffers + d.backward_scratch);
        EXPECT_DOUBLE_EQ(b.runtime, d.cuda_context + d.nccl + d.allocator);
        std::vector<DerivedTerm> terms = ExplainMemory(m, t, c, p, r);
        double sum = 0;
        for (const DerivedTerm& term : terms) {
          EXPECT_FALSE(term.formula.empty()) << term.name;
          EXPECT_GE(term.value, 0) << term.name;
          if (term.part) sum += term.value;
        }
        EXPECT_NEAR(sum / b.total(), 1.0, 1e-12) << PlanSummary(p) << " stage " << r;
      }
    }
  }
}

TEST(MemoryParams, StagesPartitionTheModel) {
  // Exact (integer-valued doubles): with TP = 1 the stages hold every
  // parameter once, plus the tied embedding copy Megatron keeps on the last
  // stage when a tied model is pipelined.
  for (const ModelSpec& m : Models()) {
    EXPECT_EQ(LayerParamsPerGpu(m, m.KindOfLayer(0), 1), static_cast<double>(m.LayerParams(m.KindOfLayer(0))));
    for (int pp : {1, 3, 4, 7}) {
      for (auto [first, last] : Splits(m, pp, 1)) {
        Plan p;
        p.pp = pp;
        p.first_stage_layers = first;
        p.last_stage_layers = last;
        double sum = 0;
        int64_t layers = 0;
        for (int r = 0; r < pp; ++r) {
          sum += ParamsOnStage(m, p, r).total();
          layers += StageLayers(p, m.layers, r);
        }
        EXPECT_EQ(layers, m.layers) << PlanSummary(p);
        const double copy = m.tie_embeddings && pp > 1 ? static_cast<double>(m.vocab * m.hidden) : 0;
        EXPECT_EQ(sum, static_cast<double>(m.TotalParams()) + copy) << m.name << " " << PlanSummary(p);
      }
    }
  }
}

TEST(MemoryParams, TensorParallelShardsMatricesAndReplicatesNorms) {
  const ModelSpec m = Llama70B();
  const double h = 8192, f = 28672, kvd = 8 * 128;
  // Llama: no biases; q,o H*H/TP; k,v H*KVD/TP; 3 MLP matrices /TP; 2 RMSNorms replicated.
  EXPECT_EQ(LayerParamsPerGpu(m, m.KindOfLayer(0), 8), 2 * h * h / 8 + 2 * h * kvd / 8 + 3 * h * f / 8 + 2 * h);
}

TEST(MemoryActivations, GqaStoresSmallerKeysAndValues) {
  // K and V shrink from H to KV*HD per token: 2 * e * B*S*(H - KVD)/TP less.
  ModelSpec gqa = Llama70B();
  ModelSpec mha = gqa;
  mha.kv_heads = mha.heads;
  TrainingSpec t = Training(gqa);
  Plan p;
  p.tp = 8;
  const double diff = ActivationBytesPerLayer(mha, LayerKind{}, t, p) - ActivationBytesPerLayer(gqa, LayerKind{}, t, p);
  EXPECT_DOUBLE_EQ(diff, 2.0 * 2 * 2048 * (8192 - 1024) / 8);
}

TEST(MemorySchedule, InFlightMicroBatches) {
  // 1F1B: stage r holds min(m, PP - r); GPipe all m; interleaved stage 0:
  // PP * (1 + (PP-1)/(PP*VPP)) (Korthikanti sec. 1), capped by m.
  EXPECT_EQ(InFlightMicroBatches(ScheduleKind::k1F1B, 8, 1, 64, 0), 8);
  EXPECT_EQ(InFlightMicroBatches(ScheduleKind::k1F1B, 8, 1, 64, 7), 1);
  EXPECT_EQ(InFlightMicroBatches(ScheduleKind::k1F1B, 8, 1, 3, 0), 3);
  EXPECT_EQ(InFlightMicroBatches(ScheduleKind::kGPipe, 8, 1, 64, 5), 64);
  EXPECT_DOUBLE_EQ(InFlightMicroBatches(ScheduleKind::kInterleaved1F1B, 8, 3, 64, 0),
                   8 * (1 + 7.0 / 24));
  EXPECT_DOUBLE_EQ(InFlightMicroBatches(ScheduleKind::kInterleaved1F1B, 4, 2, 1, 0), 1);
  for (int r = 1; r < 8; ++r) {
    EXPECT_LE(InFlightMicroBatches(ScheduleKind::kInterleaved1F1B, 8, 3, 64, r),
              InFlightMicroBatches(ScheduleKind::kInterleaved1F1B, 8, 3, 64, r - 1));
  }
}

TEST(MemoryBuffers, ZeroThreeGathersAndChunkedLossShrinks) {
  const ModelSpec m = Llama70B();
  TrainingSpec t = Training(m);
  Plan p;
  p.dp = 8;
  p.tp = 8;
  p.zero = 3;
  StageMemoryDetail d = StageMemoryDetails(m, t, Cluster(), p, 0);
  EXPECT_DOUBLE_EQ(d.zero3_gather, 2.0 * kZero3PrefetchModules * LayerParamsPerGpu(m, m.KindOfLayer(0), 8));
  EXPECT_EQ(d.communicators, 3);  // world, TP, DP
  t.logits_chunk_tokens = 0;  // the whole micro-batch's logits at once
  const double whole = StageMemoryDetails(m, t, Cluster(), p, 0).loss_activations;
  t.logits_chunk_tokens = 1024;
  const double chunked = StageMemoryDetails(m, t, Cluster(), p, 0).loss_activations;
  // Logits of 1024 of the 2048 tokens: (e + 4) * 1024 * V/TP less.
  EXPECT_DOUBLE_EQ(whole - chunked, 6.0 * 1024 * 32000 / 8);
}

TEST(MemoryFit, PeakDecides) {
  MemoryBreakdown b;
  b.weights = 40 * kGiB;
  GpuSpec gpu;
  gpu.memory_bytes = 40 * kGiB;
  EXPECT_TRUE(FitsInMemory(b, gpu));
  b.runtime = 1;
  EXPECT_FALSE(FitsInMemory(b, gpu));
}

}  // namespace
}  // namespace p3d
