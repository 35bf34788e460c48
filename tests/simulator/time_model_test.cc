// Time model invariants: the breakdown sums to the step, MFU <= HFU < 1 by
// construction, cached and one-shot evaluation agree, named errors, and the
// course's 2.5 s claim for 70B on 64 A100-80GB is caught by the FLOP floor.
#include "simulator/time_model.h"

#include <gtest/gtest.h>

#include <map>

#include "models/flops.h"
#include "models/zoo.h"
#include "simulator/framework_profile.h"

namespace p3d {
namespace {

// Llama-2-70B (published.md sec. 4).
ModelSpec Llama70B() { return ZooModel("llama-2-70b").value(); }

ClusterSpec Cluster(const char* gpu, int gpus) {
  auto c = CatalogCluster(gpu);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  ClusterSpec cluster = *c;
  cluster.num_gpus = gpus;
  return cluster;
}

// The course's plan: DP8 TP4 PP2 ZeRO-2, micro-batch 2, global 512, seq 2048.
Plan CoursePlan() {
  Plan p;
  p.dp = 8, p.tp = 4, p.pp = 2, p.zero = 2, p.micro_batch = 2, p.grad_accum = 32;
  return p;
}

std::vector<Plan> PlansFor64() {
  std::vector<Plan> plans;
  for (int tp : {1, 2, 4, 8})
    for (int pp : {1, 2, 4, 8})
      for (int vpp : {1, 2})
        for (int zero : {0, 1, 2, 3})
          for (int64_t mb : {1, 2, 4})
            for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
              Plan p;
              p.tp = tp, p.pp = pp, p.dp = 64 / (tp * pp), p.vpp = vpp, p.zero = zero;
              p.micro_batch = mb, p.recompute = rc, p.sequence_parallel = tp > 1;
              if (512 % (p.dp * mb) != 0) continue;
              p.grad_accum = 512 / (p.dp * mb);
              if (vpp > 1 && (pp == 1 || p.grad_accum % pp != 0)) continue;
              plans.push_back(p);
            }
  return plans;
}

TEST(TimeModelTest, BreakdownSumsToStepAndUtilisationBelowOne) {
  TrainingSpec t;  // 512 x 2048
  for (const char* gpu : {"a100-80gb", "h100-sxm"}) {
    TimeModel tm(Llama70B(), t, Cluster(gpu, 64));
    for (const Plan& p : PlansFor64()) {
      auto e = tm.Evaluate(p);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      const TimeBreakdown& b = e->time;
      EXPECT_EQ(b.step_s, b.compute_s + b.tp_comm_s + b.pp_comm_s + b.dp_comm_s + b.bubble_s +
                              b.optimizer_s + b.offload_s + b.other_s);
      for (double part : {b.compute_s, b.tp_comm_s, b.pp_comm_s, b.dp_comm_s, b.bubble_s,
                          b.optimizer_s, b.offload_s, b.other_s})
        EXPECT_GE(part, 0);
      EXPECT_GT(e->mfu, 0);
      EXPECT_LT(e->mfu, 1) << PlanSummary(p);
      EXPECT_LE(e->mfu, e->hfu);
      EXPECT_LT(e->hfu, 1);
      EXPECT_GT(b.step_s, e->flop_floor_s);
      if (p.pp == 1) EXPECT_EQ(b.bubble_s, 0) << PlanSummary(p);
      if (p.tp == 1) EXPECT_EQ(b.tp_comm_s, 0);
      if (p.dp == 1) EXPECT_EQ(b.dp_comm_s, 0);
    }
  }
}

TEST(TimeModelTest, CachedFastPathAgreesWithOneShotEstimate) {
  TrainingSpec t;
  const ClusterSpec c = Cluster("a100-80gb", 64);
  TimeModel tm(Llama70B(), t, c);
  const std::vector<Plan> plans = PlansFor64();
  std::vector<double> first;
  for (const Plan& p : plans) first.push_back(tm.StepSeconds(p));
  for (size_t i = 0; i < plans.size(); i += 37) {
    EXPECT_EQ(tm.StepSeconds(plans[i]), first[i]);  // warm caches: same answer
    auto e = EstimateTime(Llama70B(), t, c, plans[i]);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->time.step_s, first[i]);
  }
}

TEST(TimeModelTest, LowerBoundNeverExceedsTheSimulatedStep) {
  for (const char* fw : {"p3d", "megatron-core", "torchtitan"}) {
    TrainingSpec t;
    ApplyFrameworkProfile(LoadFrameworkProfile(fw).value(), &t);
    TimeModel tm(Llama70B(), t, Cluster("h100-sxm", 64));
    for (const Plan& p : PlansFor64()) {
      const double floor = tm.StepFloor(p);
      const double bound = tm.StepLowerBound(p);
      const double step = tm.StepSeconds(p);
      EXPECT_GT(floor, 0) << PlanSummary(p);
      EXPECT_LE(floor, bound * (1 + 1e-12)) << PlanSummary(p);
      EXPECT_LE(bound, step * (1 + 1e-12)) << PlanSummary(p);
      if (p.pp == 1) EXPECT_NEAR(bound, step, 1e-9 * step) << PlanSummary(p);  // no pipeline: exact
    }
  }
}

TEST(TimeModelTest, RecomputeCostsTimeAndThroughputFiguresAreConsistent) {
  TrainingSpec t;
  TimeModel tm(Llama70B(), t, Cluster("a100-80gb", 64));
  Plan p = CoursePlan();
  p.attention = AttentionImpl::kUnfused;  // the fused core's selective recomputes nothing
  double prev = 0;
  for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    p.recompute = rc;
    auto e = tm.Evaluate(p);
    ASSERT_TRUE(e.ok());
    EXPECT_GT(e->time.step_s, prev);
    prev = e->time.step_s;
    EXPECT_DOUBLE_EQ(e->tokens_per_s, 512.0 * 2048 / e->time.step_s);
    EXPECT_DOUBLE_EQ(e->samples_per_s, 512.0 / e->time.step_s);
    EXPECT_DOUBLE_EQ(e->model_flops, ModelFlopsPerStep(Llama70B(), 512, 2048));
    EXPECT_DOUBLE_EQ(e->hardware_flops, HardwareFlopsPerStep(Llama70B(), t, rc));
    EXPECT_NEAR(e->tflops_per_gpu, e->mfu * 312, 1e-9);
  }
}

TEST(TimeModelTest, CourseClaimOfTwoAndAHalfSecondsIsImpossible) {
  // Course: 70B on 64 A100-80GB, DP8 TP4 PP2 ZeRO-2, mb 2, global 512, seq
  // 2048, "2.5 s per step". Model FLOPs / (64 x 312 TFLOP/s) is ~22 s, so the
  // claim needs ~9x the cluster's peak.
  TrainingSpec t;
  const ClusterSpec c = Cluster("a100-80gb", 64);
  const StepClaimCheck claim = CheckStepClaim(Llama70B(), t, c, 2.5);
  EXPECT_FALSE(claim.possible);
  EXPECT_GT(claim.required_peak, 8.5);
  EXPECT_LT(claim.required_peak, 9.5);
  auto e = EstimateTime(Llama70B(), t, c, CoursePlan());
  ASSERT_TRUE(e.ok());
  EXPECT_DOUBLE_EQ(e->flop_floor_s, claim.floor_s);
  EXPECT_GT(e->time.step_s, 10 * 2.5);
}

TEST(TimeModelTest, ExplainPartsSumToStep) {
  TrainingSpec t;
  auto terms = ExplainTime(Llama70B(), t, Cluster("a100-80gb", 64), CoursePlan());
  ASSERT_TRUE(terms.ok()) << terms.status().ToString();
  double sum = 0, step = 0;
  for (const DerivedTerm& term : *terms) {
    EXPECT_FALSE(term.formula.empty()) << term.name;
    if (term.part) sum += term.value;
    if (term.name == "step") step = term.value;
  }
  EXPECT_GT(step, 0);
  EXPECT_NEAR(sum, step, 1e-12 * step);
}

// Without recording, Prepare computes pipeline rank 1 and copies it to the
// other middle ranks (TimeModel::Impl::SameWork); --explain records every
// rank computed. Both must give the same step, bit for bit up to the parts'
// summation order, on every plan: deep pipelines, VPP, each ZeRO stage, and
// profiles whose DP overlap differs by stage.
TEST(TimeModelTest, MiddleRankReuseMatchesEveryRankComputed) {
  int checked = 0;
  for (const char* fw : {"p3d", "megatron-core", "torchtitan"}) {
    TrainingSpec t;
    ApplyFrameworkProfile(LoadFrameworkProfile(fw).value(), &t);
    const ClusterSpec c = Cluster("h100-sxm", 64);
    TimeModel tm(Llama70B(), t, c);
    for (const Plan& p : PlansFor64()) {
      if (p.pp < 4 || p.micro_batch != 1 || p.recompute != Recompute::kSelective) continue;
      auto e = tm.Evaluate(p);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      auto terms = ExplainTime(Llama70B(), t, c, p);
      ASSERT_TRUE(terms.ok()) << terms.status().ToString();
      double parts = 0;
      for (const DerivedTerm& term : *terms) parts += term.part ? term.value : 0;
      EXPECT_NEAR(parts, e->time.step_s, 1e-12 * e->time.step_s) << fw << " " << PlanSummary(p);
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
}

TEST(TimeModelTest, TimelineHasEveryForwardAndBackward) {
  TrainingSpec t;
  TimeModel tm(Llama70B(), t, Cluster("a100-80gb", 64));
  Plan p = CoursePlan();
  p.vpp = 2;
  auto e = tm.Evaluate(p, true);
  ASSERT_TRUE(e.ok());
  int fwd = 0, bwd = 0, opt = 0;
  for (const TimelineEvent& ev : e->timeline) {
    fwd += ev.kind == TimelineKind::kForward;
    bwd += ev.kind == TimelineKind::kBackward;
    opt += ev.kind == TimelineKind::kOptimizer;
    EXPECT_LE(ev.end_s, e->time.step_s * (1 + 1e-12));
  }
  EXPECT_EQ(fwd, 2 * 2 * 32);
  EXPECT_EQ(bwd, 2 * 2 * 32);
  EXPECT_EQ(opt, 2);
}

// The placement decides which network tier each group crosses: TP1 PP8 DP8
// on nodes of 8. Megatron's default order keeps a stage's DP group in a node
// (NVLink) and sends the activations between nodes; tp-pp-dp keeps a
// pipeline in a node and reduces the gradients across nodes.
TEST(TimeModelTest, ThePlacementDecidesWhichTierEachGroupCrosses) {
  const ClusterSpec c = Cluster("h100-sxm", 64);
  Plan p;
  p.tp = 1, p.pp = 8, p.dp = 8, p.zero = 1, p.micro_batch = 1, p.grad_accum = 64;
  auto run = [&](Placement placement) {
    p.placement = placement;
    std::map<std::string, double> terms;
    const StatusOr<std::vector<DerivedTerm>> explained = ExplainTime(Llama70B(), TrainingSpec{}, c, p);
    for (const DerivedTerm& t : explained.value()) terms[t.name] = t.value;
    return std::pair{EstimateTime(Llama70B(), TrainingSpec{}, c, p).value(), terms};
  };
  const auto [dp_pp, dp_pp_terms] = run(Placement::kDpBeforePp);
  const auto [pp_dp, pp_dp_terms] = run(Placement::kPpBeforeDp);
  // Activations between stages: across nodes (ranks 0 -> 8) against NVLink (0 -> 1).
  EXPECT_GT(dp_pp.time.pp_comm_s, 3 * pp_dp.time.pp_comm_s) << dp_pp.time.pp_comm_s << " vs " << pp_dp.time.pp_comm_s;
  // The gradient all-reduce over DP 8: NVLink (stride 1) against the network (stride 8).
  const double bytes_ratio = (450e9 * 0.84) / (50e9 * 0.9);
  EXPECT_NEAR(pp_dp_terms.at("tail.grad_all_reduce") / dp_pp_terms.at("tail.grad_all_reduce"), bytes_ratio,
              0.05 * bytes_ratio);
}

TEST(TimeModelTest, InvalidPlansGiveNamedErrors) {
  TrainingSpec t;
  TimeModel tm(Llama70B(), t, Cluster("a100-80gb", 64));
  auto expect_error = [&](Plan p, const char* needle) {
    auto e = tm.Evaluate(p);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find(needle), std::string::npos) << e.status().message();
  };
  Plan p = CoursePlan();
  p.grad_accum = 31;
  expect_error(p, "batch=mb*ga*dp");
  p = CoursePlan();
  p.dp = 4, p.grad_accum = 64;
  expect_error(p, "gpus=dp*tp*cp*pp");
  p = CoursePlan();
  p.vpp = 2, p.micro_batch = 1, p.grad_accum = 63, p.dp = 8;
  expect_error(p, "batch");
  p = CoursePlan();
  p.zero = 4;
  expect_error(p, "zero");
  p = CoursePlan();
  p.pp = 1, p.dp = 16, p.grad_accum = 16, p.vpp = 2;
  expect_error(p, "interleave");
}

}  // namespace
}  // namespace p3d
