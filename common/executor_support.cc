#include "common/executor_support.h"

#include <fmt/format.h>

#include "common/named_rule.h"

namespace p3d {

const char* ExecutorUnsupported(const Plan& p, std::string* detail) {
  if (p.dp < 1) return RuleFailed(detail, "dp>=1", [&] { return fmt::format("--dp {}", p.dp); });
  if (p.zero < 0 || p.zero > 3)
    return RuleFailed(detail, "zero in 0..3", [&] { return fmt::format("--zero {}", p.zero); });
  if (p.tp < 1 || p.pp < 1 || p.vpp < 1)
    return RuleFailed(detail, "tp,pp,vpp>=1",
                      [&] { return fmt::format("--tp {} --pp {} --vpp {}", p.tp, p.pp, p.vpp); });
  if (p.vpp > 1 && p.pp < 2)
    return RuleFailed(detail, "vpp needs pp>1",
                      [&] { return fmt::format("--vpp {} with --pp {}", p.vpp, p.pp); });
  if (p.offload == Offload::kOptimizerAndParams)
    return RuleFailed(detail, "offload-params", [] {
      return std::string(
          "the plan offloads 'params' to the host; p3d-run offloads the optimizer only");
    });
  if (p.tp * p.pp > 1 && p.zero >= 2)
    return RuleFailed(detail, "zero-with-tp/pp", [&] {
      return fmt::format(
          "ZeRO-{} with tp={} pp={} is not implemented in p3d-run (sharded gradients and "
          "replicated-tensor norms); ZeRO 0 or 1 are",
          p.zero, p.tp, p.pp);
    });
  if (p.sequence_parallel && p.tp < 2)
    return RuleFailed(detail, "sp=>tp>1", [&] {
      return fmt::format("--sp splits the residual stream over TP, but --tp {}", p.tp);
    });
  if (p.uneven_stages())
    return RuleFailed(detail, "uneven-stages", [&] {
      return fmt::format(
          "the plan sets uneven pipeline stages (first stage {} / last stage {} layers); p3d-run "
          "splits the layers evenly over the PP x VPP model chunks",
          p.first_stage_layers, p.last_stage_layers);
    });
  return nullptr;
}

Status CheckExecutorSupports(const Plan& plan) {
  std::string detail;
  if (const char* rule = ExecutorUnsupported(plan, &detail))
    return Status::InvalidArgument(fmt::format("rule {}: {}", rule, detail));
  return Status::Ok();
}

}  // namespace p3d
