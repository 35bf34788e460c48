#include "executor/run_layout.h"

#include <fmt/format.h>

#include "simulator/framework_profile.h"

namespace p3d {

Status ApplySavedPlan(const SavedPlan& saved, TrainOptions* o, RunLayout* l) {
  const Plan& p = saved.plan;
  // p3d-run is p3d's executor: a plan predicted for another framework's
  // mechanisms would be compared against the wrong prediction.
  const std::string& framework = saved.request.framework.framework.name;
  if (framework != P3dFrameworkProfile().framework.name)
    return Status::InvalidArgument(fmt::format(
        "rule framework=p3d: the plan was predicted for '{}'; p3d-run runs p3d's executor (plan it with "
        "p3d-plan --framework p3d, the default)",
        framework));
  P3D_RETURN_IF_ERROR(CheckExecutorSupports(p));
  o->offload = p.offload;
  o->model = saved.request.model;
  o->micro_batch = p.micro_batch;
  o->grad_accum = p.grad_accum;
  o->seq = saved.request.training.seq;
  o->recompute = p.recompute;
  o->attention = p.attention;
  o->logits_chunk = saved.request.training.logits_chunk_tokens;
  l->dp = p.dp;
  l->tp = p.tp;
  l->pp = p.pp;
  l->vpp = p.vpp;
  l->zero = p.zero;
  l->sequence_parallel = p.sequence_parallel;
  return Status::Ok();
}

Status CheckSupportedLayout(const RunLayout& l) {
  if (l.dp < 1) return Status::InvalidArgument(fmt::format("rule dp>=1: --dp {}", l.dp));
  if (l.zero < 0 || l.zero > 3)
    return Status::InvalidArgument(fmt::format("rule zero in 0..3: --zero {}", l.zero));
  if (l.tp < 1 || l.pp < 1 || l.vpp < 1)
    return Status::InvalidArgument(
        fmt::format("rule tp,pp,vpp>=1: --tp {} --pp {} --vpp {}", l.tp, l.pp, l.vpp));
  if (l.vpp > 1 && l.pp < 2)
    return Status::InvalidArgument(
        fmt::format("rule vpp needs pp>1: --vpp {} with --pp {}", l.vpp, l.pp));
  P3D_RETURN_IF_ERROR(CheckExecutorSupports(l.AsPlan()));
  if (l.sequence_parallel && l.tp < 2)
    return Status::InvalidArgument(
        fmt::format("rule sp=>tp>1: --sp splits the residual stream over TP, but --tp {}", l.tp));
  return Status::Ok();
}

}  // namespace p3d
