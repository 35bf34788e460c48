#include "planner/plan.h"

#include <fmt/format.h>

namespace p3d {

const char* RecomputeName(Recompute r) {
  switch (r) {
    case Recompute::kNone: return "none";
    case Recompute::kSelective: return "selective";
    case Recompute::kFull: return "full";
  }
  return "?";
}

std::string PlanSummary(const Plan& p) {
  return fmt::format("DP{} TP{} PP{} VPP{} ZeRO-{} mb{} ga{} rc={}{}", p.dp, p.tp, p.pp, p.vpp,
                     p.zero, p.micro_batch, p.grad_accum, RecomputeName(p.recompute),
                     p.sequence_parallel ? " SP" : "");
}

}  // namespace p3d
