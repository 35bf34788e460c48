#include "common/plan.h"

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

bool ParseRecompute(const std::string& name, Recompute* out) {
  for (Recompute r : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    if (name == RecomputeName(r)) {
      *out = r;
      return true;
    }
  }
  return false;
}

const char* OffloadName(Offload o) {
  switch (o) {
    case Offload::kNone: return "none";
    case Offload::kOptimizer: return "optimizer";
    case Offload::kOptimizerAndParams: return "params";
  }
  return "?";
}

bool ParseOffload(const std::string& name, Offload* out) {
  for (Offload o : {Offload::kNone, Offload::kOptimizer, Offload::kOptimizerAndParams}) {
    if (name == OffloadName(o)) {
      *out = o;
      return true;
    }
  }
  return false;
}

const char* AttentionImplName(AttentionImpl a) {
  return a == AttentionImpl::kFused ? "fused" : "unfused";
}

bool ParseAttentionImpl(const std::string& name, AttentionImpl* out) {
  for (AttentionImpl a : {AttentionImpl::kFused, AttentionImpl::kUnfused}) {
    if (name == AttentionImplName(a)) {
      *out = a;
      return true;
    }
  }
  return false;
}

std::string PlanSummary(const Plan& p) {
  return fmt::format("DP{} TP{} PP{} VPP{} ZeRO-{} mb{} ga{} rc={}{}{}{}", p.dp, p.tp, p.pp, p.vpp,
                     p.zero, p.micro_batch, p.grad_accum, RecomputeName(p.recompute),
                     p.sequence_parallel ? " SP" : "",
                     p.offload == Offload::kNone ? "" : std::string(" offload=") + OffloadName(p.offload),
                     p.attention == AttentionImpl::kFused ? "" : " attn=unfused");
}

}  // namespace p3d
