#include "planner/plan_json.h"

#include "models/model_json.h"
#include "simulator/framework_profile.h"

namespace p3d {

using nlohmann::json;

json EvaluatedPlanToJson(const PlanRequest& r, const EvaluatedPlan& e) {
  json j = LayoutToJson(e.plan, r.training);
  json pred = PredictionToJson(e);
  for (auto it = pred.begin(); it != pred.end(); ++it) j[it.key()] = it.value();
  return j;
}

json SearchToJson(const PlanRequest& r, const SearchResult& res) {
  json plans = json::array();
  for (const EvaluatedPlan& e : res.plans) plans.push_back(EvaluatedPlanToJson(r, e));
  json rejected = json::object();
  for (const auto& [rule, count] : res.rejected_by_rule) rejected[rule] = count;
  return json{{"schema", "p3d-plan/1"},
              {"model", ModelToJson(r.model)},
              {"cluster", ClusterSummaryToJson(r.cluster)},
              {"framework", FrameworkProfileToJson(r.framework)},
              {"training", TrainingToJson(r.training)},
              {"search",
               {{"candidates", res.candidates},
                {"fitting", res.fitting},
                {"seconds", res.seconds},
                {"rejected_by_rule", rejected}}},
              {"plans", plans}};
}

}  // namespace p3d
