// Kernel-level calibration (simulator/profile_kernels.cc): the measured
// attention core, optimizer step, compute slowed by collectives and NCCL
// memory step by step, and how the compute, time and memory models use them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "models/zoo.h"
#include "simulator/compute_model.h"
#include "simulator/memory_model.h"
#include "simulator/profile.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

using nlohmann::json;

ClusterSpec H200() { return CatalogCluster("h200").value(); }

// gpt-1.3b (NH 16, HD 128) at B = 4, S = 2048, n = 4 causal blocks on one GPU;
// times are made up but plausible (about half of peak).
json Calibration() {
  return json::parse(R"({
    "card": "NVIDIA H200", "catalog_gpu": "h200",
    "attention": [
      {"label": "gpt-1.3b B=16 S=1024 TP=1", "batch": 16, "seq": 1024, "heads": 16, "kv_heads": 16,
       "head_dim": 128, "blocks": 4, "forward_s": 5.0e-3, "probs_s": 3.0e-3, "backward_s": 9.0e-3},
      {"label": "gpt-1.3b B=4 S=2048 TP=1", "batch": 4, "seq": 2048, "heads": 16, "kv_heads": 16,
       "head_dim": 128, "blocks": 4, "forward_s": 1.0e-3, "probs_s": 0.6e-3, "backward_s": 2.2e-3},
      {"label": "gpt-1.3b B=1 S=2048 TP=1", "batch": 1, "seq": 2048, "heads": 16, "kv_heads": 16,
       "head_dim": 128, "blocks": 4, "forward_s": 0.4e-3, "probs_s": 0.25e-3, "backward_s": 0.9e-3}],
    "optimizer": {"params": 268435456, "bytes_per_param": 34, "seconds": 2.4e-3},
    "offload_step": {"params": 134217728, "seconds_per_step": 0.041, "cpu_adam_s": 0.040},
    "interference": {"comm_alone_s": 0.010, "gemm_alone_s": 0.030, "gemm_with_comm_s": 0.035,
                     "memory_alone_s": 0.030, "memory_with_comm_s": 0.038},
    "runtime": {"free_after_context_bytes": 140e9, "nccl_first_bytes": 2.0e9,
                "nccl_split_bytes": 0.2e9, "nccl_p2p_bytes": 0.8e9}
  })");
}

// Forward FLOPs of the first entry: 4 B NH S^2 HD (n+1)/(2n).
constexpr double kCoreFlops = 4.0 * 4 * 16 * 2048.0 * 2048 * 128 * 5 / 8;

TEST(AttentionCalibration, EfficiencyIsFlopsOverPeakTimesSeconds) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  // B = 16 at S = 1024 has the same F as B = 4 at S = 2048: kept apart by S.
  ASSERT_EQ(c.gpu.attention_efficiency.size(), 3u);
  AttentionEfficiencyPoint p;
  ASSERT_TRUE(AttentionEfficiency(c.gpu, 128, 2048, kCoreFlops, &p));
  const double peak = c.gpu.peak_flops;
  EXPECT_NEAR(p.forward, kCoreFlops / (peak * 1.0e-3), 1e-12);
  EXPECT_NEAR(p.probs, kCoreFlops / 2 / (peak * 0.6e-3), 1e-12);
  EXPECT_NEAR(p.backward, 2 * kCoreFlops / (peak * 2.2e-3), 1e-12);
  EXPECT_FALSE(AttentionEfficiency(c.gpu, 64, 2048, kCoreFlops, &p)) << "no point of head_dim 64";
}

TEST(AttentionCalibration, LayerCoreTakesTheMeasuredTimeAtAMeasuredShape) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  ModelSpec m = ZooModel("gpt-1.3b").value();
  TrainingSpec t;
  t.seq = 2048;
  ASSERT_EQ(t.AttentionBlocks(), 4) << "the fixture assumes 4 blocks at S = 2048";
  // The calibration points time the unfused core (p3d-calibrate's probe).
  ComputeShape sel{1, 4, Recompute::kSelective, false, AttentionImpl::kUnfused};
  // Selective recompute re-runs exactly the probabilities part of the core.
  EXPECT_NEAR(LayerKernels(m, LayerKind{}, t, c.gpu, sel).recompute.total(), 0.6e-3, 1e-12);
  // The core replaces GEMM-table + HBM estimates: forward and backward
  // differ from the uncalibrated layer by (measured - analytic core).
  ComputeShape none{1, 4, Recompute::kNone, false, AttentionImpl::kUnfused};
  const LayerKernelTimes cal = LayerKernels(m, LayerKind{}, t, c.gpu, none);
  const LayerKernelTimes raw = LayerKernels(m, LayerKind{}, t, H200().gpu, none);
  EXPECT_NE(cal.forward.total(), raw.forward.total());
  // Between two measured shapes the efficiency interpolates: B = 2 lies
  // between the B = 1 and B = 4 times.
  ComputeShape mid{1, 2, Recompute::kSelective, false, AttentionImpl::kUnfused};
  const double probs2 = LayerKernels(m, LayerKind{}, t, c.gpu, mid).recompute.total();
  EXPECT_GT(probs2, 0.25e-3);
  EXPECT_LT(probs2, 0.6e-3);
}

TEST(GemmCalibration, MeasuredPlanShapesAreTimedAsMeasured) {
  json cal = Calibration();
  cal["gemm"] = json::parse(R"([
    {"label": "qkv", "source": "plan", "m": 8192, "n": 6144, "k": 2048,
     "fwd_s": 2.7e-4, "dx_s": 2.6e-4, "dw_s": 2.8e-4},
    {"label": "head", "source": "plan", "m": 1024, "n": 50304, "k": 2048,
     "fwd_s": 3.0e-4, "dx_s": 3.1e-4, "dw_s": 3.2e-4},
    {"label": "sweep", "source": "sweep", "m": 4096, "n": 4096, "k": 4096,
     "fwd_s": 2.0e-4, "dx_s": 2.0e-4, "dw_s": 2.0e-4}])");
  ClusterSpec c = ApplyCalibration(H200(), cal, "p.json").value();
  ASSERT_EQ(c.gpu.gemm_shapes.size(), 2u) << "plan shapes only";
  GemmShapeTime t;
  ASSERT_TRUE(MeasuredGemm(c.gpu, 8192, 6144, 2048, &t));
  EXPECT_DOUBLE_EQ(t.fwd_s, 2.7e-4);
  // The unpadded vocabulary (50257) is timed from the padded measurement, scaled by n.
  ASSERT_TRUE(MeasuredGemm(c.gpu, 1024, 50257, 2048, &t));
  EXPECT_NEAR(t.dw_s, 3.2e-4 * 50257 / 50304, 1e-15);
  EXPECT_FALSE(MeasuredGemm(c.gpu, 8192, 6144, 4096, &t)) << "k differs";
  EXPECT_FALSE(MeasuredGemm(c.gpu, 8192, 7000, 2048, &t)) << "n differs by more than 1%";
  // The LM head of gpt-1.3b at B*S = 8192 runs as 8 chunks of 1024 tokens
  // (TrainingSpec::logits_chunk_tokens), each timed as measured.
  ModelSpec m = ZooModel("gpt-1.3b").value();
  TrainingSpec tr;
  tr.seq = 2048;
  EdgeKernelTimes e = EdgeKernels(m, tr, c.gpu, {1, 4, Recompute::kNone, false});
  const double r = 50257.0 / 50304;
  EXPECT_NEAR(e.head_forward.gemm_s, 8 * 3.0e-4 * r, 1e-12);
  EXPECT_NEAR(e.head_backward.gemm_s, 8 * (3.1e-4 + 3.2e-4) * r, 1e-12);
}

TEST(HbmCalibration, SmallKernelsRunBelowTheLargeKernelsBandwidth) {
  json cal = Calibration();
  cal["hbm"] = json::parse(R"({"elementwise_bytes": 3.0e9, "elementwise_s": 0.75e-3,
    "elementwise_sizes": [{"bytes": 6291456, "seconds": 4.0e-6},
                          {"bytes": 100663296, "seconds": 28.0e-6}]})");
  ClusterSpec c = ApplyCalibration(H200(), cal, "p.json").value();
  const double bw = c.gpu.hbm_bytes_per_s;
  ASSERT_EQ(c.gpu.hbm_efficiency_by_bytes.size(), 3u);
  EXPECT_NEAR(HbmEfficiency(c.gpu, 6291456), 6291456 / 4.0e-6 / bw, 1e-12);
  EXPECT_NEAR(HbmEfficiency(c.gpu, 3.0e9), 3.0e9 / 0.75e-3 / bw, 1e-12);
  EXPECT_NEAR(HbmEfficiency(c.gpu, 1e3), 6291456 / 4.0e-6 / bw, 1e-12) << "clamped below";
  EXPECT_NEAR(MemoryBoundSeconds(c.gpu, 100663296), 28.0e-6, 1e-15);
  // Each memory-bound op is its own kernel: a small model's layer pays the
  // small-kernel rate, so its memory-bound time exceeds the one-efficiency estimate.
  ModelSpec m = ZooModel("gpt2-medium").value();
  TrainingSpec t;
  t.seq = 1024;
  ClusterSpec flat = c;
  flat.gpu.hbm_efficiency_by_bytes.clear();
  ComputeShape sh{1, 2, Recompute::kNone, false};
  EXPECT_GT(LayerKernels(m, LayerKind{}, t, c.gpu, sh).forward.memory_s,
            1.2 * LayerKernels(m, LayerKind{}, t, flat.gpu, sh).forward.memory_s);
  cal["hbm"]["elementwise_sizes"][0]["seconds"] = 1e-9;
  auto bad = ApplyCalibration(H200(), cal, "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("calibration.hbm.elementwise_sizes[0].seconds"),
            std::string::npos)
      << bad.status().message();
}

TEST(OptimizerCalibration, StepTimeScalesFromTheMeasuredRate) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  EXPECT_NEAR(c.gpu.optimizer_efficiency, 268435456.0 * 34 / 2.4e-3 / c.gpu.hbm_bytes_per_s, 1e-12);
  Precision p;  // 34 bytes per parameter (2 + 4 + 4 + 8, norm read included)
  EXPECT_NEAR(OptimizerSeconds(c.gpu, p, 268435456.0), 2.4e-3, 1e-12);
  EXPECT_NEAR(OptimizerSeconds(c.gpu, p, 2 * 268435456.0), 4.8e-3, 1e-12);
}

TEST(OffloadCalibration, CpuRateIsTheUpdateInsideTheOffloadedStep) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  EXPECT_NEAR(c.node.cpu_adam_params_per_s, 134217728.0 / 0.040, 1e-3);
  EXPECT_NEAR(CpuAdamParamsPerS(c.node), 134217728.0 / 0.040, 1e-3);
}

TEST(InterferenceCalibration, SlowdownPerSecondOfHiddenCollective) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  EXPECT_NEAR(c.gpu.overlap_slowdown_gemm, 0.5, 1e-12);
  EXPECT_NEAR(c.gpu.overlap_slowdown_memory, 0.8, 1e-12);
}

TEST(InterferenceCalibration, DataParallelStepGrowsLinearlyInTheSlowdown) {
  ModelSpec m = ZooModel("gpt-1.3b").value();
  TrainingSpec t;
  t.seq = 2048;
  t.global_batch = 8;
  Plan p;
  p.dp = 2, p.micro_batch = 4, p.grad_accum = 1;
  auto step = [&](double slowdown) {
    ClusterSpec c = H200();
    c.num_gpus = 2;
    c.gpu.overlap_slowdown_gemm = c.gpu.overlap_slowdown_memory = slowdown;
    return TimeModel(m, t, c).Evaluate(p).value().time;
  };
  const TimeBreakdown base = step(0), quarter = step(0.25), half = step(0.5);
  EXPECT_GT(quarter.step_s, base.step_s);
  EXPECT_NEAR(half.step_s - base.step_s, 2 * (quarter.step_s - base.step_s), 1e-12);
  // The slowdown is DP time: compute itself is unchanged.
  EXPECT_DOUBLE_EQ(half.compute_s, base.compute_s);
  EXPECT_GT(half.dp_comm_s, base.dp_comm_s);
  // One GPU has no collectives to slow it.
  Plan one = p;
  one.dp = 1;
  ClusterSpec c1 = H200();
  c1.num_gpus = 1;
  c1.gpu.overlap_slowdown_gemm = c1.gpu.overlap_slowdown_memory = 0.5;
  t.global_batch = 4;
  EXPECT_EQ(TimeModel(m, t, c1).Evaluate(one).value().time.dp_comm_s, 0);
}

TEST(NcclCalibration, FirstCommunicatorPlusFurtherOnesPlusPipelineConnections) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  const RuntimeMemory& rt = c.gpu.runtime;
  EXPECT_DOUBLE_EQ(rt.nccl_first_comm_bytes, 2.0e9);
  EXPECT_DOUBLE_EQ(rt.nccl_per_comm_bytes, 0.2e9);
  EXPECT_DOUBLE_EQ(rt.nccl_p2p_bytes, 0.8e9);
  EXPECT_DOUBLE_EQ(NcclBytes(rt, 0, false), 0);
  EXPECT_DOUBLE_EQ(NcclBytes(rt, 2, false), 2.2e9);
  EXPECT_DOUBLE_EQ(NcclBytes(rt, 4, true), 2.0e9 + 3 * 0.2e9 + 0.8e9);
  // The memory model uses it: TP2 x PP2 of a tied-embedding model is in
  // world, TP, PP and the embedding group on its first stage.
  ModelSpec m = ZooModel("gpt-1.3b").value();
  TrainingSpec t;
  t.global_batch = 8;
  Plan p;
  p.tp = 2, p.pp = 2, p.micro_batch = 1, p.grad_accum = 8;
  c.num_gpus = 4;
  StageMemoryDetail d = StageMemoryDetails(m, t, c, p, 0);
  EXPECT_EQ(d.communicators, 4);
  EXPECT_DOUBLE_EQ(d.nccl, 2.0e9 + 3 * 0.2e9 + 0.8e9);
}

TEST(KernelCalibration, CatalogFiguresRoundTripThroughHardwareJson) {
  ClusterSpec c = ApplyCalibration(H200(), Calibration(), "p.json").value();
  ClusterSpec back = ParseClusterJson(ClusterToJson(c), "round.json").value();
  ASSERT_EQ(back.gpu.attention_efficiency.size(), c.gpu.attention_efficiency.size());
  EXPECT_DOUBLE_EQ(back.gpu.attention_efficiency[1].backward,
                   c.gpu.attention_efficiency[1].backward);
  EXPECT_DOUBLE_EQ(back.gpu.optimizer_efficiency, c.gpu.optimizer_efficiency);
  EXPECT_DOUBLE_EQ(back.gpu.overlap_slowdown_memory, c.gpu.overlap_slowdown_memory);
  EXPECT_DOUBLE_EQ(back.gpu.runtime.nccl_first_comm_bytes, 2.0e9);
  EXPECT_DOUBLE_EQ(back.gpu.runtime.nccl_p2p_bytes, 0.8e9);
}

TEST(KernelCalibration, ErrorsNameTheField) {
  struct Case {
    const char* pointer;  // JSON pointer of the field to replace
    json value;
    const char* field;
  };
  const Case cases[] = {
      {"/attention/0/forward_s", 1e-9, "calibration.attention[0].forward_s"},
      {"/attention/1/head_dim", -1, "calibration.attention[1].head_dim"},
      {"/attention", json::object(), "calibration.attention"},
      {"/optimizer/seconds", 1e-9, "calibration.optimizer.seconds"},
      {"/optimizer/params", "many", "calibration.optimizer.params"},
      {"/interference/gemm_alone_s", 0.005, "calibration.interference.gemm_alone_s"},
      {"/interference/memory_with_comm_s", nullptr, "calibration.interference.memory_with_comm_s"},
      {"/runtime/nccl_split_bytes", -1, "calibration.runtime.nccl_split_bytes"},
      {"/offload_step/cpu_adam_s", 0, "calibration.offload_step.cpu_adam_s"},
  };
  for (const Case& k : cases) {
    json cal = Calibration();
    cal[json::json_pointer(k.pointer)] = k.value;
    auto r = ApplyCalibration(H200(), cal, "prof.json");
    ASSERT_FALSE(r.ok()) << k.pointer;
    EXPECT_NE(r.status().message().find(k.field), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("prof.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace p3d
