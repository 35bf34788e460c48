// --explain: the course-style derivation of a plan's predicted memory and
// step time, each term with its formula and the numbers put in, and the
// comparison with the course's rule of thumb.
#pragma once

#include <optional>
#include <string>

#include "simulator/evaluated_plan.h"
#include "planner/search.h"

namespace p3d {

// Memory terms of every stage's peak (per GPU) and the time terms of the
// step, then the FLOP floor. `pick` is the plan's rank in the table (1-based).
std::string ExplainPlan(const PlanRequest& request, const EvaluatedPlan& plan, int pick);

// The course's rule of thumb for a model size, as fixed search dimensions:
//   < 7B: DP only;  7-30B: DP + TP2, ZeRO-2;  30-100B: TP4, PP2-4 (the smallest
//   that divides), ZeRO-3;  > 100B: TP8, PP4, ZeRO-3 + CPU optimizer offload.
struct RuleOfThumb {
  std::string description;
  SearchConstraints fixed;
};
RuleOfThumb CourseRuleOfThumb(const ModelSpec& model);

// "The rule's plan is X s, N x slower than p3d's best" (or why it is illegal
// or does not fit), from a search restricted to the rule's dimensions.
std::string CompareWithRuleOfThumb(const PlanRequest& request, const EvaluatedPlan& best);

// A claimed step time checked against the FLOP floor and p3d's prediction.
std::string ExplainStepClaim(const PlanRequest& request, const EvaluatedPlan& plan, double claimed_step_s);

}  // namespace p3d
