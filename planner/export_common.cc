// Checks shared by every exporter, and the by-name dispatch the CLI uses.
#include <fmt/format.h>

#include <algorithm>

#include "planner/export.h"

namespace p3d {

Status CheckExportable(const PlanRequest& request, const Plan& plan) {
  if (plan.dp < 1 || plan.tp < 1 || plan.cp < 1 || plan.pp < 1 || plan.vpp < 1) {
    return Status::InvalidArgument(
        fmt::format("rule degrees>=1: plan has dp={} tp={} cp={} pp={} vpp={}", plan.dp, plan.tp,
                    plan.cp, plan.pp, plan.vpp));
  }
  if (plan.micro_batch < 1 || plan.grad_accum < 1) {
    return Status::InvalidArgument(fmt::format(
        "rule batch>=1: plan has micro_batch={} grad_accum={}", plan.micro_batch, plan.grad_accum));
  }
  if (plan.zero < 0 || plan.zero > 3) {
    return Status::InvalidArgument(
        fmt::format("rule zero-stage: {} is not a ZeRO stage 0..3", plan.zero));
  }
  if (plan.gpus() != request.cluster.num_gpus) {
    return Status::InvalidArgument(
        fmt::format("rule gpus=dp*tp*cp*pp: plan uses {}x{}x{}x{}={} GPUs but the request has {}",
                    plan.dp, plan.tp, plan.cp, plan.pp, plan.gpus(), request.cluster.num_gpus));
  }
  if (plan.global_batch() != request.training.global_batch) {
    return Status::InvalidArgument(fmt::format(
        "rule batch identity: micro_batch {} x grad_accum {} x DP {} = {} != global batch {}",
        plan.micro_batch, plan.grad_accum, plan.dp, plan.global_batch(),
        request.training.global_batch));
  }
  std::string detail;
  if (Fp8RuleBroken(request.training.framework, RuleKind::kLimit, request.training.fp8, &detail))
    return Status::Infeasible(detail);
  return Status::Ok();
}

Status CheckFrameworkRuns(const PlanRequest& request, const Plan& plan) {
  for (RuleKind kind : {RuleKind::kLimit, RuleKind::kGap})
    P3D_RETURN_IF_ERROR(CheckFrameworkRule(request.framework, kind, plan));
  return Status::Ok();
}

std::vector<std::string_view> ExportFrameworks(std::string_view format) {
  if (format == "megatron") return {"megatron-core"};
  if (format == "torchtitan") return {"torchtitan"};
  if (format == "deepspeed") return {"deepspeed", "megatron-deepspeed"};
  return {};
}

Status CheckExportFramework(std::string_view format, const std::string& name) {
  const std::vector<std::string_view> writes = ExportFrameworks(format);
  if (writes.empty() || std::find(writes.begin(), writes.end(), name) != writes.end()) return Status::Ok();
  std::string list;
  for (std::string_view w : writes) list += (list.empty() ? "" : " or ") + std::string(w);
  return Status::InvalidArgument(fmt::format(
      "rule export-framework: --export {} writes the mechanisms of the {} profile, but the plan is predicted for "
      "'{}'; give --framework {} (or leave --framework out: --export {} selects {})",
      format, list, name, writes.front(), format, writes.front()));
}

StatusOr<ExportedFile> ExportPlan(std::string_view format, const PlanRequest& request,
                                  const EvaluatedPlan& plan, const LaunchOptions& launch) {
  if (format == "deepspeed") return ExportDeepSpeedConfig(request, plan);
  if (format == "megatron") return ExportMegatronArgs(request, plan);
  if (format == "torchrun") return ExportTorchrun(request, plan, launch);
  if (format == "slurm") return ExportSlurm(request, plan, launch);
  if (format == "torchtitan") return ExportTorchtitanConfig(request, plan);
  return Status::InvalidArgument(fmt::format(
      "--export: unknown format '{}' (known: deepspeed, megatron, torchtitan, torchrun, slurm)",
      format));
}

}  // namespace p3d
