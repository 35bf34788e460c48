// The saved plan (`p3d-plan --save-plan`, read by `p3d-run --plan` and
// `p3d-compare`) and the JSON pieces it shares with the search output
// (schema: docs/json-schema.md). Below both the planner and the executor,
// which both read it. JSON carries raw bytes and seconds; every figure is a
// prediction.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "simulator/evaluated_plan.h"

namespace p3d {

// Summary fields plus "hardware": the full hardware description (docs/hardware.md schema).
nlohmann::json ClusterSummaryToJson(const ClusterSpec& cluster);
nlohmann::json TrainingToJson(const TrainingSpec& training);
nlohmann::json MemoryToJson(const MemoryBreakdown& memory);
// A plan's layout fields, and its prediction (fit, memory per stage, time, throughput).
nlohmann::json LayoutToJson(const Plan& plan, const TrainingSpec& training);
nlohmann::json PredictionToJson(const EvaluatedPlan& plan);

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

// p3d-run's fit check: OK when the saved prediction fits or `force` is set,
// else Infeasible naming the predicted peak, its stage and the GPU.
Status CheckPredictedFit(const SavedPlan& plan, bool force, const std::string& plan_file);

}  // namespace p3d
