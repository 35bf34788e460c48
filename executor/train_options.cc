#include "executor/train_options.h"

#include "executor/host/pipeline_program.h"
#include "simulator/executor_support.h"
#include "simulator/memory_model.h"

namespace p3d {

void ApplySavedPlan(const SavedPlan& saved, TrainOptions* o) {
  o->plan = saved.plan;
  o->model = saved.request.model;
  o->seq = saved.request.training.seq;
  o->logits_chunk = saved.request.training.logits_chunk_tokens;
}

Status CheckRunnable(const Plan& plan) {
  P3D_RETURN_IF_ERROR(CheckExecutorSupports(plan));
  if (plan.pp > 1)
    P3D_RETURN_IF_ERROR(
        CompilePipeline(ScheduleOf(plan), plan.pp, plan.vpp, plan.grad_accum).status());
  return Status::Ok();
}

}  // namespace p3d
