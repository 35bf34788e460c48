#include "planner/evaluator.h"

#include <limits>

#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {

struct PlanEvaluator::Impl {
  explicit Impl(const PlanRequest& r) : time(r.model, r.training, r.cluster), memory(r.model, r.training, r.cluster) {}
  TimeModel time;
  PeakMemoryCache memory;
};

PlanEvaluator::PlanEvaluator(const PlanRequest& request)
    : request_(request), impl_(new Impl(request_)) {}

PlanEvaluator::~PlanEvaluator() { delete impl_; }

PlanEvaluator::Quick PlanEvaluator::EvaluateMemory(const Plan& plan, bool exact_peak) {
  Quick q;
  double host_bytes_per_node = 0;
  const MemoryBreakdown peak = impl_->memory.Peak(
      plan, &host_bytes_per_node,
      exact_peak ? std::numeric_limits<double>::infinity() : request_.cluster.gpu.memory_bytes);
  q.peak_bytes = peak.total();
  q.fits = FitsInMemory(peak, request_.cluster.gpu) && FitsInHostMemory(host_bytes_per_node, request_.cluster.node);
  return q;
}

double PlanEvaluator::StepLowerBound(const Plan& plan) { return impl_->time.StepLowerBound(plan); }
double PlanEvaluator::StepFloor(const Plan& plan) { return impl_->time.StepFloor(plan); }

StatusOr<TimeEstimate> PlanEvaluator::Time(const Plan& plan, bool with_timeline) {
  return impl_->time.Evaluate(plan, with_timeline);
}

EvaluatedPlan PlanEvaluator::Evaluate(const Plan& plan, bool with_timeline) {
  return Evaluate(plan, Time(plan, with_timeline));
}

EvaluatedPlan PlanEvaluator::Evaluate(const Plan& plan, const StatusOr<TimeEstimate>& t) {
  EvaluatedPlan e;
  e.plan = plan;
  e.memory = EstimateMemory(request_.model, request_.training, request_.cluster, plan);
  e.fits = FitsInMemory(e.memory.peak(), request_.cluster.gpu) &&
           FitsInHostMemory(e.memory.host_bytes_per_node, request_.cluster.node);
  e.runs_rule = FrameworkRuleBroken(request_.training.framework, RuleKind::kGap, plan);
  if (e.runs_rule == nullptr)
    e.runs_rule = Fp8RuleBroken(request_.training.framework, RuleKind::kGap, request_.training.fp8);
  if (t.ok()) {
    e.time = t->time;
    e.tokens_per_s = t->tokens_per_s;
    e.samples_per_s = t->samples_per_s;
    e.tflops_per_gpu = t->tflops_per_gpu;
    e.mfu = t->mfu;
    e.hfu = t->hfu;
    e.timeline = t->timeline;
  }
  return e;
}

}  // namespace p3d
