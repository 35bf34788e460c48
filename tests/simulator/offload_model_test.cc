// CPU offload in the memory and time models (docs/offload.md): what leaves
// the GPU, what the host holds, and the transfer and CPU-step terms.
#include <gtest/gtest.h>

#include <set>

#include "models/zoo.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

ClusterSpec Cluster(const std::string& gpu, int gpus) {
  ClusterSpec c = CatalogCluster(gpu).value();
  c.num_gpus = gpus;
  return c;
}

Plan Layout(int dp, int tp, int pp, int zero, Offload offload, int64_t global_batch = 512) {
  Plan p;
  p.dp = dp, p.tp = tp, p.pp = pp, p.zero = zero, p.offload = offload;
  p.micro_batch = 1;
  p.grad_accum = global_batch / dp;
  p.recompute = Recompute::kFull;
  return p;
}

// Issue 8: Llama-2-13B on 8 x 24 GB. Model states at 18 bytes/param need
// 13.0e9 * 18 / 8 = 27.3 GiB per GPU even at TP8, so nothing fits without
// offload; with optimizer offload only the bf16 weights (and ZeRO-1's fp32
// gradients) stay.
TEST(OffloadModelTest, WhatLeavesTheGpu) {
  const ModelSpec m = ZooModel("llama-2-13b").value();
  const TrainingSpec t;
  const ClusterSpec c = Cluster("rtx3090", 8);
  Plan none = Layout(1, 8, 1, 0, Offload::kNone);
  MemoryBreakdown gpu = EstimateMemory(m, t, c, none).peak();
  EXPECT_GT((gpu.weights + gpu.gradients + gpu.optimizer) / kGiB, 27.0);
  EXPECT_FALSE(FitsInMemory(gpu, c.gpu));

  for (int zero = 1; zero <= 2; ++zero) {
    Plan off = Layout(1, 8, 1, zero, Offload::kOptimizer);
    MemoryBreakdown g = EstimateMemory(m, t, c, off).peak();
    EXPECT_EQ(g.weights, gpu.weights);
    EXPECT_EQ(g.optimizer, 0);
    EXPECT_EQ(g.gradients, zero == 1 ? gpu.gradients : 0.0) << "ZeRO-" << zero;
  }
  Plan params = Layout(8, 1, 1, 3, Offload::kOptimizerAndParams, 64);
  MemoryBreakdown p = EstimateMemory(m, t, c, params).peak();
  EXPECT_EQ(p.weights + p.gradients + p.optimizer, 0);
  EXPECT_GT(p.buffers, 0);  // the ZeRO-3 gather buffers still hold two modules
  EXPECT_TRUE(FitsInMemory(p, c.gpu));
}

// Host per GPU: the 18 bytes/param of the default recipe (master 4 + Adam 8
// + pinned fp32 gradients 4 + pinned bf16 parameters 2) over the GPU's shard,
// plus the runtime reserve; per node: GPUs per node times the largest stage.
TEST(OffloadModelTest, HostMemoryPerGpuAndNode) {
  const ModelSpec m = ZooModel("llama-2-13b").value();
  const TrainingSpec t;
  const ClusterSpec c = Cluster("rtx3090", 8);
  for (Plan p : {Layout(2, 1, 4, 2, Offload::kOptimizer), Layout(8, 1, 1, 3, Offload::kOptimizerAndParams, 64)}) {
    MemoryEstimate e = EstimateMemory(m, t, c, p);
    double largest = 0;
    for (const StageMemory& s : e.stages) {
      const double shard = ParamsOnStage(m, p, s.stage).total() / p.dp;
      EXPECT_DOUBLE_EQ(s.host_bytes, 18 * shard + kHostRuntimePerGpuBytes) << PlanSummary(p);
      largest = std::max(largest, s.host_bytes);
    }
    EXPECT_DOUBLE_EQ(e.host_bytes_per_node, 8 * largest);
    EXPECT_DOUBLE_EQ(HostBytesPerNode(m, t, c, p), e.host_bytes_per_node);
    // The whole model's 18 bytes/param on one node of 8 GPUs, + 8 x 2 GiB
    // (up to 5% more where the largest stage also holds the embedding or head).
    const double whole = 18 * static_cast<double>(m.TotalParams()) + 8 * kHostRuntimePerGpuBytes;
    EXPECT_GE(e.host_bytes_per_node, whole * (1 - 1e-9)) << PlanSummary(p);
    EXPECT_LE(e.host_bytes_per_node, whole * 1.05) << PlanSummary(p);
    EXPECT_TRUE(FitsInHostMemory(e.host_bytes_per_node, c.node));  // 256 GiB workstation
    NodeSpec small = c.node;
    small.host_memory_bytes = 128 * kGiB;
    EXPECT_FALSE(FitsInHostMemory(e.host_bytes_per_node, small));
  }
  EXPECT_EQ(HostBytesPerNode(m, t, c, Layout(8, 1, 1, 3, Offload::kNone, 64)), 0);
  // The explanation's host terms sum to the per-GPU figure; the last line is the node.
  const Plan p = Layout(2, 1, 4, 2, Offload::kOptimizer);
  std::vector<DerivedTerm> terms = ExplainHostMemory(m, t, c, p, 0);
  ASSERT_EQ(terms.size(), 6u);
  double sum = 0;
  for (size_t i = 0; i + 1 < terms.size(); ++i) {
    EXPECT_TRUE(terms[i].part) << terms[i].name;
    sum += terms[i].value;
  }
  EXPECT_DOUBLE_EQ(sum, EstimateMemory(m, t, c, p).stages[0].host_bytes);
  EXPECT_EQ(terms.back().name, "host.node");
}

// Time: the parts still sum to the step; with PP = 1 the CPU AdamW is fully
// exposed after the last backward (GPUs per node x shard / node params/s);
// more PCIe bandwidth or a faster CPU never slows a step.
TEST(OffloadModelTest, TransfersAndCpuStepInTheStep) {
  const ModelSpec m = ZooModel("llama-2-13b").value();
  const TrainingSpec t;
  const ClusterSpec c = Cluster("rtx3090", 8);
  for (Plan p : {Layout(8, 1, 1, 1, Offload::kOptimizer, 64), Layout(8, 1, 1, 2, Offload::kOptimizer, 64),
                 Layout(8, 1, 1, 3, Offload::kOptimizer, 64), Layout(8, 1, 1, 3, Offload::kOptimizerAndParams, 64),
                 Layout(2, 1, 4, 2, Offload::kOptimizer)}) {
    TrainingSpec tt = t;
    tt.global_batch = p.global_batch();
    auto e = EstimateTime(m, tt, c, p);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const TimeBreakdown& b = e->time;
    EXPECT_NEAR(b.step_s, b.compute_s + b.tp_comm_s + b.pp_comm_s + b.dp_comm_s + b.bubble_s +
                              b.optimizer_s + b.offload_s + b.other_s, 1e-12 * b.step_s);
    EXPECT_GT(b.offload_s, 0) << PlanSummary(p);
    if (p.pp == 1) {
      const double shard = ParamsOnStage(m, p, 0).total() / p.dp;
      EXPECT_DOUBLE_EQ(b.optimizer_s, 8 * shard / CpuAdamParamsPerS(c.node)) << PlanSummary(p);
    }
    ClusterSpec fast = c;
    fast.node.pcie_bytes_per_s *= 2;
    fast.node.cpu_adam_params_per_s = 2 * CpuAdamParamsPerS(c.node);
    auto f = EstimateTime(m, tt, fast, p);
    ASSERT_TRUE(f.ok());
    EXPECT_LE(f->time.step_s, b.step_s) << PlanSummary(p);
    EXPECT_LT(f->time.offload_s + f->time.optimizer_s, b.offload_s + b.optimizer_s) << PlanSummary(p);
  }
  // Without offload nothing is attributed to it.
  auto none = EstimateTime(m, TrainingSpec{.global_batch = 64}, Cluster("h100-sxm", 8),
                           Layout(8, 1, 1, 3, Offload::kNone, 64));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->time.offload_s, 0);
}

// --explain: the transfer and CPU-step terms are listed, and the starred parts
// (time.offload among them) still sum to the step.
TEST(OffloadModelTest, ExplainShowsTransferAndCpuTerms) {
  const ModelSpec m = ZooModel("llama-2-13b").value();
  const ClusterSpec c = Cluster("rtx3090", 8);
  const Plan p = Layout(8, 1, 1, 3, Offload::kOptimizerAndParams, 64);
  auto terms = ExplainTime(m, TrainingSpec{.global_batch = 64}, c, p);
  ASSERT_TRUE(terms.ok());
  double in_step = 0, step = 0;
  std::set<std::string> names;
  for (const DerivedTerm& term : *terms) {
    names.insert(term.name);
    if (term.part) in_step += term.value;
    if (term.name == "step") step = term.value;
  }
  for (const char* name : {"chunk.offload_d2h_gradients", "tail.cpu_adam", "chunk.offload_uploads", "time.offload"})
    EXPECT_EQ(names.count(name), 1u) << name;
  EXPECT_NEAR(in_step, step, 1e-9 * step);
}

TEST(OffloadModelTest, OffloadNeedsAHostLink) {
  const ModelSpec m = ZooModel("llama-2-13b").value();
  ClusterSpec c = Cluster("rtx3090", 8);
  c.node.pcie_bytes_per_s = 0;
  auto e = EstimateTime(m, TrainingSpec{.global_batch = 64}, c, Layout(8, 1, 1, 2, Offload::kOptimizer, 64));
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("pcie_bytes_per_s"), std::string::npos);
}

}  // namespace
}  // namespace p3d
