// FP8 training (common/fp8.h): the recipe names, the catalog's FP8 figures,
// what each recipe changes in time and memory (docs/time-model.md "FP8",
// docs/memory-model.md "FP8"), the frameworks' FP8 support rule and the
// hardware file's FP8 fields.
#include <gtest/gtest.h>

#include "models/zoo.h"
#include "simulator/compute_model.h"
#include "simulator/framework_profile.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

TEST(Fp8Recipe, NamesRoundTripAndRefuseUnknown) {
  for (int i = 0; i < kFp8RecipeCount; ++i) {
    const Fp8Recipe r = static_cast<Fp8Recipe>(i);
    Fp8Recipe back = Fp8Recipe::kOff;
    ASSERT_TRUE(ParseFp8Recipe(Fp8RecipeName(r), &back)) << Fp8RecipeName(r);
    EXPECT_EQ(back, r);
  }
  Fp8Recipe r = Fp8Recipe::kDelayed;
  EXPECT_FALSE(ParseFp8Recipe("e4m3", &r));
  EXPECT_EQ(r, Fp8Recipe::kDelayed);
}

TEST(Fp8Catalog, DatasheetPeaksAndCapabilities) {
  const ClusterSpec h100 = CatalogCluster("h100-sxm").value();
  EXPECT_DOUBLE_EQ(h100.gpu.fp8_peak_flops, 1979e12);  // 2x the 989 dense bf16
  EXPECT_TRUE(h100.gpu.fp8_tn_only);
  EXPECT_FALSE(h100.gpu.mxfp8);
  const ClusterSpec b200 = CatalogCluster("b200").value();
  EXPECT_DOUBLE_EQ(b200.gpu.fp8_peak_flops, 4500e12);
  EXPECT_TRUE(b200.gpu.mxfp8);
  EXPECT_FALSE(b200.gpu.fp8_tn_only);
  for (const char* none : {"a100-80gb", "v100-32gb", "rtx3090"})
    EXPECT_EQ(CatalogCluster(none).value().gpu.fp8_peak_flops, 0) << none;
  // The FP8 curve has the bf16 curve's shape: a large GEMM reaches its plateau.
  EXPECT_NEAR(Fp8GemmEfficiency(h100.gpu, 1e14), 0.72, 1e-12);  // measured: bench/results/fp8-gemm-h100.md
  EXPECT_LT(Fp8GemmEfficiency(h100.gpu, 1e9), Fp8GemmEfficiency(h100.gpu, 1e11));
}

struct Llama70b {
  ModelSpec model = ZooModel("llama-2-70b").value();
  ClusterSpec cluster = CatalogCluster("h100-sxm").value();
  TrainingSpec training;
  Plan plan;
  Llama70b() {
    SetFrameworkOn(&training);
    training.seq = 4096;
    plan.dp = 8, plan.tp = 4, plan.pp = 2, plan.zero = 1;
    plan.micro_batch = 1, plan.grad_accum = 8, plan.sequence_parallel = true;
    training.global_batch = plan.global_batch();
    cluster.num_gpus = plan.gpus();
  }
  static void SetFrameworkOn(TrainingSpec* t) {
    ApplyFrameworkProfile(LoadFrameworkProfile("megatron-core").value(), t);
  }
};

TEST(Fp8Time, LinearGemmsGetFasterAndCastsAreAdded) {
  Llama70b s;
  const ComputeShape shape{s.plan.tp, s.plan.micro_batch, Recompute::kNone, true, AttentionImpl::kFused};
  const LayerKernelTimes bf16 = LayerKernels(s.model, LayerKind{}, s.training, s.cluster.gpu, shape);
  s.training.fp8 = Fp8Recipe::kDelayed;
  const LayerKernelTimes delayed = LayerKernels(s.model, LayerKind{}, s.training, s.cluster.gpu, shape);
  s.training.fp8 = Fp8Recipe::kTensorwise;
  const LayerKernelTimes current = LayerKernels(s.model, LayerKind{}, s.training, s.cluster.gpu, shape);
  // GEMMs: the linear layers at the FP8 rate, the attention core unchanged.
  EXPECT_LT(delayed.forward.gemm_s, 0.8 * bf16.forward.gemm_s);
  EXPECT_LT(delayed.backward.gemm_s, 0.8 * bf16.backward.gemm_s);
  EXPECT_DOUBLE_EQ(delayed.forward.gemm_s, current.forward.gemm_s);
  // Memory-bound: the casts add; current scaling's amax pass adds more.
  EXPECT_GT(delayed.forward.memory_s, bf16.forward.memory_s);
  EXPECT_GT(current.forward.memory_s, delayed.forward.memory_s);
  EXPECT_GT(current.backward.memory_s, delayed.backward.memory_s);
  // The step is faster overall.
  Llama70b off;
  Llama70b on;
  on.training.fp8 = Fp8Recipe::kTensorwise;
  const double t_off = EstimateTime(off.model, off.training, off.cluster, off.plan).value().time.step_s;
  const double t_on = EstimateTime(on.model, on.training, on.cluster, on.plan).value().time.step_s;
  EXPECT_LT(t_on, 0.9 * t_off);
}

TEST(Fp8Time, CastBytesFollowTheCopiesOfTheGpu) {
  // Hopper keeps a transposed copy (2 writes per quantized tensor), Blackwell
  // per-tensor scaling one; MXFP8 two (row- and column-wise scales).
  const GpuSpec h100 = CatalogCluster("h100-sxm").value().gpu, b200 = CatalogCluster("b200").value().gpu;
  EXPECT_EQ(Fp8Copies(h100, Fp8Recipe::kDelayed), 2);
  EXPECT_EQ(Fp8Copies(b200, Fp8Recipe::kTensorwise), 1);
  EXPECT_EQ(Fp8Copies(b200, Fp8Recipe::kMxfp8), 2);
  EXPECT_EQ(Fp8Copies(b200, Fp8Recipe::kBlockwise), 2);
}

TEST(Fp8Memory, WeightCopiesScalingStateAndSavedInputs) {
  Llama70b off;
  Llama70b on;
  on.training.fp8 = Fp8Recipe::kDelayed;
  const StageMemoryDetail a = StageMemoryDetails(off.model, off.training, off.cluster, off.plan, 0);
  const StageMemoryDetail b = StageMemoryDetails(on.model, on.training, on.cluster, on.plan, 0);
  // Two FP8 copies (row-wise + transposed) of every linear weight of the stage,
  // plus 12 amax histories (1026 fp32 each) per layer.
  const double linear = a.layers * LinearWeightsPerLayer(off.model, LayerKind{}, off.plan.tp);
  const double scaling = a.layers * 12 * 4.0 * (kFp8AmaxHistoryLen + 2);
  EXPECT_NEAR(b.memory.weights - a.memory.weights, 2 * linear + scaling, 1.0);
  // Saved linear inputs in FP8: fewer activation bytes (the fused core keeps
  // its bf16 output beside the FP8 out-proj input).
  EXPECT_LT(b.layer_activations, a.layer_activations);
  // NeMo keeps FP8 primary weights (fp8_param_gather): no bf16 copy of the
  // linear weights, so only the transposed copy and the scaling state add.
  Llama70b nemo;
  ApplyFrameworkProfile(LoadFrameworkProfile("nemo").value(), &nemo.training);
  Llama70b nemo_on = nemo;
  nemo_on.training.fp8 = Fp8Recipe::kDelayed;
  const double nemo_off_w = StageMemoryDetails(nemo.model, nemo.training, nemo.cluster, nemo.plan, 0).memory.weights;
  const double nemo_on_w =
      StageMemoryDetails(nemo_on.model, nemo_on.training, nemo_on.cluster, nemo_on.plan, 0).memory.weights;
  EXPECT_NEAR(nemo_on_w - nemo_off_w, scaling, 1.0);
  // ZeRO-3 keeps no persistent FP8 copy.
  Llama70b z3;
  z3.plan.pp = 1, z3.plan.dp = 16, z3.plan.zero = 3, z3.plan.grad_accum = 4;
  z3.training.global_batch = z3.plan.global_batch();
  Llama70b z3_on = z3;
  z3_on.training.fp8 = Fp8Recipe::kDelayed;
  const double w0 = StageMemoryDetails(z3.model, z3.training, z3.cluster, z3.plan, 0).memory.weights;
  const double w1 = StageMemoryDetails(z3_on.model, z3_on.training, z3_on.cluster, z3_on.plan, 0).memory.weights;
  EXPECT_LT(w1 - w0, 1e7);  // the scaling state only
}

// The FP8 copies cover the linear weights a GPU holds: with expert
// parallelism E/EP routed experts (the bug this guards: all E counted, which
// with NeMo's FP8 primary weights made the weights term negative).
TEST(Fp8Memory, ExpertParallelCopiesCoverTheLocalExpertsOnly) {
  const ModelSpec mixtral = ZooModel("mixtral-8x7b").value();
  const LayerKind moe{true, false};
  const double expert = 3.0 * static_cast<double>(mixtral.hidden) * static_cast<double>(mixtral.expert_ffn());
  EXPECT_NEAR(LinearWeightsPerLayer(mixtral, moe, 1, 1) - LinearWeightsPerLayer(mixtral, moe, 1, 8), 7 * expert, 1.0);
  // Expert TP 2 halves each local expert; the attention stays at TP.
  EXPECT_NEAR(LinearWeightsPerLayer(mixtral, moe, 1, 8) - LinearWeightsPerLayer(mixtral, moe, 1, 8, 2), expert / 2, 1.0);
  TrainingSpec training;
  ApplyFrameworkProfile(LoadFrameworkProfile("nemo").value(), &training);
  training.fp8 = Fp8Recipe::kTensorwise;
  training.seq = 2048;
  const ClusterSpec b200 = CatalogCluster("b200").value();
  Plan plan;
  plan.dp = 8, plan.ep = 8, plan.zero = 1, plan.micro_batch = 1, plan.grad_accum = 8;
  training.global_batch = plan.global_batch();
  const StageMemoryDetail d = StageMemoryDetails(mixtral, training, b200, plan, 0);
  const StageParams p = ParamsOnStage(mixtral, plan, 0);
  EXPECT_GT(d.memory.weights, 0);
  EXPECT_LT(d.memory.weights, 2.5 * p.total());  // bf16 non-linear weights + at most 2 FP8 bytes per linear one
}

TEST(Fp8Frameworks, SupportRuleNamesLimitsAndGaps) {
  auto fw = [](const char* name) { return LoadFrameworkProfile(name).value().framework; };
  std::string detail;
  // Megatron-Core runs every recipe.
  for (int i = 1; i < kFp8RecipeCount; ++i)
    for (RuleKind k : {RuleKind::kLimit, RuleKind::kGap})
      EXPECT_EQ(Fp8RuleBroken(fw("megatron-core"), k, static_cast<Fp8Recipe>(i)), nullptr);
  // torchtitan has no delayed scaling: a limit, named with what it runs.
  ASSERT_NE(Fp8RuleBroken(fw("torchtitan"), RuleKind::kLimit, Fp8Recipe::kDelayed, &detail), nullptr);
  EXPECT_NE(detail.find("torchtitan: rule fp8-recipe: FP8 recipe delayed"), std::string::npos) << detail;
  EXPECT_NE(detail.find("tensorwise, mxfp8"), std::string::npos) << detail;
  EXPECT_EQ(Fp8RuleBroken(fw("torchtitan"), RuleKind::kLimit, Fp8Recipe::kTensorwise), nullptr);
  EXPECT_EQ(Fp8RuleBroken(fw("llm-foundry"), RuleKind::kLimit, Fp8Recipe::kDelayed), nullptr);
  EXPECT_NE(Fp8RuleBroken(fw("deepspeed"), RuleKind::kLimit, Fp8Recipe::kDelayed), nullptr);
  // p3d's executor: predicted, not run yet (a gap, not a limit).
  EXPECT_EQ(Fp8RuleBroken(fw("p3d"), RuleKind::kLimit, Fp8Recipe::kDelayed), nullptr);
  EXPECT_NE(Fp8RuleBroken(fw("p3d"), RuleKind::kGap, Fp8Recipe::kDelayed), nullptr);
  EXPECT_EQ(Fp8RuleBroken(fw("deepspeed"), RuleKind::kLimit, Fp8Recipe::kOff), nullptr);
}

TEST(Fp8Frameworks, P3dRunRefusesAnFp8Plan) {
  const Status s = CheckPlannedForExecutor(P3dFrameworkProfile(), Fp8Recipe::kTensorwise);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rule fp8-recipe"), std::string::npos) << s.message();
  EXPECT_TRUE(CheckPlannedForExecutor(P3dFrameworkProfile(), Fp8Recipe::kOff).ok());
}

TEST(Fp8Hardware, FileRoundTripsAndRefusesACurveWithoutPeak) {
  const ClusterSpec h100 = CatalogCluster("h100-sxm").value();
  const ClusterSpec back = ParseClusterJson(ClusterToJson(h100), "round trip").value();
  EXPECT_EQ(back.gpu.fp8_peak_flops, h100.gpu.fp8_peak_flops);
  EXPECT_EQ(back.gpu.fp8_gemm_efficiency.size(), h100.gpu.fp8_gemm_efficiency.size());
  EXPECT_TRUE(back.gpu.fp8_tn_only);
  const ClusterSpec a100 = CatalogCluster("a100-80gb").value();
  EXPECT_EQ(ParseClusterJson(ClusterToJson(a100), "a100").value().gpu.fp8_peak_flops, 0);
  std::string text = ClusterToJson(h100);
  const size_t at = text.find("\"fp8_peak_flops\"");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 16, "\"fp8_peak_flopz\"");
  const StatusOr<ClusterSpec> bad = ParseClusterJson(text, "bad");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fp8"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace p3d
