// p3d-plan's `runs` column against p3d-run's own validation (issue 13): for
// every zoo model up to 70B on 1, 2, 4, 8 and 64 GPUs of two catalog cards,
// each listed plan marked runnable passes everything p3d-run checks on the CPU
// before it touches a GPU (saved-plan round trip, ApplySavedPlan,
// CheckSupportedLayout, the pipeline program), and each plan marked not
// runnable is refused by p3d-run naming the same rule.
#include <gtest/gtest.h>

#include "executor/host/pipeline_program.h"
#include "executor/run_layout.h"
#include "models/zoo.h"
#include "simulator/saved_plan.h"
#include "planner/search.h"

namespace p3d {
namespace {

// p3d-run's CPU-side checks of a saved plan (executor/cli/p3d_run.cc).
Status RunValidation(const PlanRequest& request, const EvaluatedPlan& e) {
  P3D_ASSIGN_OR_RETURN(SavedPlan saved, ParseSavedPlan(SavedPlanToJson(request, e), "plan.json"));
  TrainOptions o;
  RunLayout layout;
  P3D_RETURN_IF_ERROR(ApplySavedPlan(saved, &o, &layout));
  P3D_RETURN_IF_ERROR(CheckSupportedLayout(layout));
  if (layout.pp > 1) {
    const ScheduleKind kind = layout.vpp > 1 ? ScheduleKind::kInterleaved1F1B : ScheduleKind::k1F1B;
    P3D_RETURN_IF_ERROR(CompilePipeline(kind, layout.pp, layout.vpp, o.grad_accum).status());
  }
  return Status::Ok();
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

}  // namespace
}  // namespace p3d
