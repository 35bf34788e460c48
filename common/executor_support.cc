#include "common/executor_support.h"

#include <fmt/format.h>

namespace p3d {

const char* ExecutorUnsupported(const Plan& p, std::string* detail) {
  if (p.offload == Offload::kOptimizerAndParams) {
    if (detail) *detail = "the plan offloads 'params' to the host; p3d-run offloads the optimizer only";
    return "offload-params";
  }
  if (p.tp * p.pp > 1 && p.zero >= 2) {
    if (detail)
      *detail = fmt::format("ZeRO-{} with tp={} pp={} is not implemented in p3d-run (sharded gradients and "
                            "replicated-tensor norms); ZeRO 0 or 1 are",
                            p.zero, p.tp, p.pp);
    return "zero-with-tp/pp";
  }
  if (p.uneven_stages()) {
    if (detail)
      *detail = fmt::format("the plan sets uneven pipeline stages (first stage {} / last stage {} layers); p3d-run "
                            "splits the layers evenly over the PP x VPP model chunks",
                            p.first_stage_layers, p.last_stage_layers);
    return "uneven-stages";
  }
  return nullptr;
}

Status CheckExecutorSupports(const Plan& plan) {
  std::string detail;
  if (const char* rule = ExecutorUnsupported(plan, &detail))
    return Status::InvalidArgument(fmt::format("rule {}: {}", rule, detail));
  return Status::Ok();
}

}  // namespace p3d
