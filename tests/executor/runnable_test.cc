// p3d-plan's `runs` column against p3d-run's own validation (issue 13): for
// every zoo model up to 70B on 1, 2, 4, 8 and 64 GPUs of two catalog cards,
// each listed plan marked runnable passes everything p3d-run checks on the CPU
// before it touches a GPU (saved-plan round trip, ApplySavedPlan,
// CheckRunnable: executor support and the pipeline program), and each plan marked not
// runnable is refused by p3d-run naming the same rule.
#include <gtest/gtest.h>

#include "executor/train_options.h"
#include "models/zoo.h"
#include "simulator/saved_plan.h"
#include "planner/search.h"

namespace p3d {
namespace {

// p3d-run's CPU-side checks of a saved plan (executor/cli/p3d_run.cc).
Status RunValidation(const PlanRequest& request, const EvaluatedPlan& e) {
  P3D_ASSIGN_OR_RETURN(SavedPlan saved, ParseSavedPlan(SavedPlanToJson(request, e), "plan.json"));
  TrainOptions o;
  ApplySavedPlan(saved, &o);
  return CheckRunnable(o.plan);
}

TEST(Runnable, EveryRunnablePlanPassesP3dRunsValidation) {
  int runnable = 0, refused = 0;
  for (const std::string& name : ZooNames()) {
    const ModelSpec model = *ZooModel(name);
    if (model.TotalParams() > 71e9) continue;
    for (const char* gpu : {"h100-sxm", "a100-80gb"}) {
      for (int gpus : {1, 2, 4, 8, 64}) {
        PlanRequest r;
        r.model = model;
        r.cluster = *CatalogCluster(gpu);
        r.cluster.num_gpus = gpus;
        for (bool only : {false, true}) {
          SearchOptions o;
          o.top_k = 10;
          o.runnable_only = only;
          StatusOr<SearchResult> s = SearchPlans(r, o);
          if (!s.ok()) continue;  // no legal plan (e.g. heads % TP): nothing to run
          for (const EvaluatedPlan& e : s->plans) {
            SCOPED_TRACE(name + " on " + std::to_string(gpus) + " x " + gpu + ": " + PlanSummary(e.plan));
            const Status v = RunValidation(r, e);
            if (e.runs_rule == nullptr) {
              EXPECT_TRUE(v.ok()) << v.ToString();
              ++runnable;
            } else {
              EXPECT_FALSE(only) << "--runnable listed a plan p3d-run refuses";
              ASSERT_FALSE(v.ok());
              EXPECT_NE(v.message().find(std::string("rule ") + e.runs_rule), std::string::npos) << v.message();
              ++refused;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(runnable, 100);
  EXPECT_GT(refused, 10);  // the column is not vacuous: ZeRO-2/3 with TP/PP plans rank among the top
}

// Uneven pipeline stages: p3d-plan says p3d-run does not run them, and
// p3d-run refuses the saved plan by the same rule.
TEST(Runnable, UnevenStagesAreRefusedByName) {
  PlanRequest r;
  r.model = *ZooModel("gpt2-small");  // 12 layers on PP 5: 4 | 2 x 4
  r.cluster = *CatalogCluster("h100-sxm");
  r.cluster.num_gpus = 5;
  r.training.seq = 1024;
  r.training.global_batch = 10;
  SearchOptions o;
  o.fixed.pp = 5;
  o.fixed.first_stage_layers = 4;
  StatusOr<SearchResult> s = SearchPlans(r, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_FALSE(s->plans.empty());
  const EvaluatedPlan& e = s->plans.front();
  ASSERT_NE(e.runs_rule, nullptr);
  EXPECT_STREQ(e.runs_rule, "uneven-stages");
  const Status v = RunValidation(r, e);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.message().find("rule uneven-stages"), std::string::npos) << v.message();
  o.runnable_only = true;
  EXPECT_FALSE(SearchPlans(r, o).ok());  // nothing left to run
}

// Context parallel and hybrid sharding: p3d-plan lists them for the p3d
// profile as gaps, and p3d-run refuses the saved plan by the same rule.
TEST(Runnable, ContextParallelAndHybridShardingAreRefusedByName) {
  PlanRequest r;
  r.model = *ZooModel("llama-3-8b");
  r.cluster = *CatalogCluster("h100-sxm");
  r.cluster.num_gpus = 16;
  r.training.seq = 8192;
  r.training.global_batch = 16;
  for (const char* rule : {"no-cp", "no-hsdp"}) {
    SCOPED_TRACE(rule);
    SearchOptions o;
    o.fixed.cp = std::string(rule) == "no-cp" ? 2 : 1;
    o.fixed.zero_shard = std::string(rule) == "no-hsdp" ? 8 : 0;
    o.fixed.tp = 1;
    o.fixed.pp = 1;
    o.fixed.zero = 3;
    o.top_k = 1;
    StatusOr<SearchResult> s = SearchPlans(r, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_FALSE(s->plans.empty());
    const EvaluatedPlan& e = s->plans.front();
    ASSERT_NE(e.runs_rule, nullptr);
    EXPECT_STREQ(e.runs_rule, rule);
    const Status v = RunValidation(r, e);
    ASSERT_FALSE(v.ok());
    EXPECT_NE(v.message().find(std::string("rule ") + rule), std::string::npos) << v.message();
  }
}

}  // namespace
}  // namespace p3d
