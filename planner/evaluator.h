// PlanEvaluator: the simulator as the planner sees it. Built once per search
// (it caches per-shape costs), then asked about many plans.
//
// Thread-safety: one evaluator per thread.
#pragma once

#include "planner/evaluated_plan.h"

namespace p3d {

class PlanEvaluator {
 public:
  explicit PlanEvaluator(const PlanRequest& request);
  ~PlanEvaluator();
  PlanEvaluator(const PlanEvaluator&) = delete;
  PlanEvaluator& operator=(const PlanEvaluator&) = delete;

  // Peak-stage memory and step time only; no heap allocation on the hot path.
  // step_s is computed only when the plan fits (else 0).
  struct Quick {
    double peak_bytes = 0;
    double step_s = 0;
    bool fits = false;
  };
  Quick EvaluateQuick(const Plan& plan);

  // Every predicted figure, per stage, for output. The plan must be legal.
  EvaluatedPlan Evaluate(const Plan& plan, bool with_timeline);

  const PlanRequest& request() const { return request_; }

 private:
  struct Impl;
  PlanRequest request_;
  Impl* impl_;
};

}  // namespace p3d
