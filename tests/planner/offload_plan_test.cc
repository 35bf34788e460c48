// Offload in the planner (issue 8): found where nothing else fits, ranked
// after on-GPU plans where both fit, carried through the saved-plan JSON.
#include <gtest/gtest.h>

#include "models/zoo.h"
#include "planner/plan_json.h"
#include "planner/search.h"
#include "tests/planner/catalog_request.h"

namespace p3d {
namespace {


// The homework: 13B on 8 x 24 GB (RTX 3090) fits only with offload.
TEST(OffloadPlanTest, FindsOffloadPlansWhereNothingElseFits) {
  PlanRequest r = CatalogRequest("llama-2-13b", "rtx3090", 8, 64);
  SearchOptions o;
  o.top_k = 20;
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_FALSE(res->plans.empty());
  for (const EvaluatedPlan& e : res->plans) {
    EXPECT_TRUE(e.fits) << PlanSummary(e.plan);
    EXPECT_NE(e.plan.offload, Offload::kNone) << PlanSummary(e.plan);
    EXPECT_LE(e.memory.peak().total(), r.cluster.gpu.memory_bytes);
    EXPECT_LE(e.memory.host_bytes_per_node, r.cluster.node.host_memory_bytes);
  }
  o.fixed.offload = Offload::kNone;
  EXPECT_EQ(SearchPlans(r, o)->fitting, 0);
}

// 7B on 8 x H100 fits on the GPUs: offload plans fit too but rank behind,
// since their CPU step and copies only add time.
TEST(OffloadPlanTest, OnGpuPlansRankFirstWhereBothFit) {
  PlanRequest r = CatalogRequest("llama-2-7b", "h100-sxm", 8, 64);
  SearchOptions o;
  o.top_k = 1;
  StatusOr<SearchResult> all = SearchPlans(r, o);
  ASSERT_TRUE(all.ok());
  ASSERT_FALSE(all->plans.empty());
  EXPECT_EQ(all->plans[0].plan.offload, Offload::kNone);
  o.fixed.offload = Offload::kOptimizer;
  StatusOr<SearchResult> off = SearchPlans(r, o);
  ASSERT_TRUE(off.ok());
  ASSERT_FALSE(off->plans.empty());
  EXPECT_TRUE(off->plans[0].fits);
  EXPECT_GT(off->plans[0].time.step_s, all->plans[0].time.step_s);
}

TEST(OffloadPlanTest, SavedPlanRoundTripsOffload) {
  PlanRequest r = CatalogRequest("llama-2-13b", "rtx3090", 8, 64);
  SearchOptions o;
  o.top_k = 1;
  o.fixed.offload = Offload::kOptimizerAndParams;
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok());
  ASSERT_FALSE(res->plans.empty());
  nlohmann::json doc = SavedPlanToJson(r, res->plans[0]);
  EXPECT_EQ(doc["plan"]["offload"], "params");
  EXPECT_GT(doc["prediction"]["host_bytes_per_node"].get<double>(), 0);
  StatusOr<SavedPlan> back = ParseSavedPlan(doc, "saved");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->plan.offload, Offload::kOptimizerAndParams);

  doc["plan"].erase("offload");  // plans saved before offload existed
  EXPECT_EQ(ParseSavedPlan(doc, "saved")->plan.offload, Offload::kNone);
  doc["plan"]["offload"] = "nvme";
  StatusOr<SavedPlan> bad = ParseSavedPlan(doc, "saved");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'offload'"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace p3d
