// JSON form of the search results (`p3d-plan --json`, docs/json-schema.md);
// the saved plan's JSON is simulator/saved_plan.h.
#pragma once

#include <nlohmann/json.hpp>

#include "planner/search.h"
#include "simulator/evaluated_plan.h"
#include "simulator/saved_plan.h"

namespace p3d {

// One ranked plan: layout, fit, peak-stage memory, per-stage memory, time, throughput.
nlohmann::json EvaluatedPlanToJson(const PlanRequest& request, const EvaluatedPlan& plan);
// The whole `p3d-plan --json` document.
nlohmann::json SearchToJson(const PlanRequest& request, const SearchResult& result);

}  // namespace p3d
