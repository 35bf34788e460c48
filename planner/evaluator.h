// PlanEvaluator: the simulator as the planner sees it. Built once per search
// (it caches per-shape costs), then asked about many plans.
//
// Thread-safety: one evaluator per thread.
#pragma once

#include "simulator/evaluated_plan.h"
#include "simulator/time_model.h"

namespace p3d {

class PlanEvaluator {
 public:
  explicit PlanEvaluator(const PlanRequest& request);
  ~PlanEvaluator();
  PlanEvaluator(const PlanEvaluator&) = delete;
  PlanEvaluator& operator=(const PlanEvaluator&) = delete;

  // Peak-stage memory only; no heap allocation. Without `exact_peak`, a plan
  // over the GPU's memory is evaluated only up to its first stage over it:
  // `fits` is exact, `peak_bytes` then that stage's total (<= the peak).
  struct Quick {
    double peak_bytes = 0;
    double step_s = 0;  // filled by the caller from StepSeconds when the plan is timed
    bool fits = false;
  };
  Quick EvaluateMemory(const Plan& plan, bool exact_peak = true);
  // A bound no slower than the simulated step (cheap), and the simulated step
  // with its breakdown (errors name the plan field at fault).
  double StepLowerBound(const Plan& plan);
  double StepFloor(const Plan& plan);  // cheaper and weaker: <= StepLowerBound
  StatusOr<TimeEstimate> Time(const Plan& plan, bool with_timeline);

  // Every predicted figure, per stage, for output. The plan must be legal.
  EvaluatedPlan Evaluate(const Plan& plan, bool with_timeline);
  // The same with a time estimate Time() already produced for this plan.
  EvaluatedPlan Evaluate(const Plan& plan, const StatusOr<TimeEstimate>& time);

  const PlanRequest& request() const { return request_; }

 private:
  struct Impl;
  PlanRequest request_;
  Impl* impl_;
};

}  // namespace p3d
