// JSON forms of search results and saved plans (schema: docs/json-schema.md).
// JSON carries raw bytes and seconds; every figure is a prediction.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "planner/evaluated_plan.h"
#include "planner/search.h"

namespace p3d {

// Summary fields plus "hardware": the full hardware description (docs/hardware.md schema).
nlohmann::json ClusterSummaryToJson(const ClusterSpec& cluster);
nlohmann::json TrainingToJson(const TrainingSpec& training);
nlohmann::json MemoryToJson(const MemoryBreakdown& memory);
// One ranked plan: layout, fit, peak-stage memory, per-stage memory, time, throughput.
nlohmann::json EvaluatedPlanToJson(const PlanRequest& request, const EvaluatedPlan& plan);
// The whole `p3d-plan --json` document.
nlohmann::json SearchToJson(const PlanRequest& request, const SearchResult& result);

// `--save-plan`: everything needed to run the plan and compare with its prediction.
nlohmann::json SavedPlanToJson(const PlanRequest& request, const EvaluatedPlan& plan);
struct SavedPlan {
  PlanRequest request;
  Plan plan;
  nlohmann::json prediction;  // the "prediction" object as written
};
// Reads a --save-plan file back. Errors name the file and the missing/ill-typed field.
StatusOr<SavedPlan> LoadSavedPlan(const std::string& path);
StatusOr<SavedPlan> ParseSavedPlan(const nlohmann::json& doc, const std::string& origin);

}  // namespace p3d
