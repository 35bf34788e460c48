#include "executor/run_layout.h"

#include <fmt/format.h>

namespace p3d {

Status ApplySavedPlan(const SavedPlan& saved, TrainOptions* o, RunLayout* l) {
  const Plan& p = saved.plan;
  if (p.offload == Offload::kOptimizerAndParams)
    return Status::InvalidArgument(
        "rule offload: the plan offloads 'params' to the host; p3d-run offloads the optimizer "
        "only");
  o->offload = p.offload;
  o->model = saved.request.model;
  o->micro_batch = p.micro_batch;
  o->grad_accum = p.grad_accum;
  o->seq = saved.request.training.seq;
  o->recompute = p.recompute;
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
  auto refuse = [](const char* rule, int value) {
    return Status::InvalidArgument(fmt::format(
        "rule {}: {} requested; this executor runs data parallelism (ZeRO 0-3) only; tensor and "
        "pipeline parallelism are not implemented yet (issue 5)",
        rule, value));
  };
  if (l.tp != 1) return refuse("tp=1", l.tp);
  if (l.pp != 1) return refuse("pp=1", l.pp);
  if (l.vpp != 1) return refuse("vpp=1", l.vpp);
  if (l.sequence_parallel) return refuse("sp off", 1);
  return Status::Ok();
}

}  // namespace p3d
