// Time model: the step time of a plan, where it goes, and the throughput and
// utilisation figures derived from it. docs/time-model.md derives every term;
// docs/metrics.md defines every figure.
//
// Composition (per pipeline rank r, per micro-batch, per virtual chunk c):
//   forward(r,c)  = layers(r,c) * [layer forward kernels + 2 TP collectives]
//                   (+ embedding on virtual stage 0, + final norm, LM head and
//                   loss on the last) (+ exposed ZeRO-3 parameter gathers)
//   backward(r,c) = layers(r,c) * [layer backward kernels + recompute + 2 TP
//                   collectives (+ 2 more with full recompute)] (+ edges)
//                   (+ exposed ZeRO-3 gathers and ZeRO-2/3 gradient
//                   reduce-scatters)
// The pipeline simulation (simulator/pipeline_sim.h) runs the plan's schedule
// (interleaved 1F1B when vpp > 1, else 1F1B) with those durations and the
// per-boundary p2p times. After its last backward each rank reduces gradients
// (ZeRO-0/1: all-reduce overlapped in buckets with its last micro-batch's
// backward; only the excess is exposed), steps the optimizer and (ZeRO-1/2)
// all-gathers the updated parameters. step = max over ranks of the end of that.
//
// Breakdown (TimeBreakdown, estimate.h) is taken on the busiest pipeline rank
// r* (largest forward+backward time): compute = its kernels, tp_comm = its TP
// collectives, dp_comm = its exposed ZeRO-2/3 in-stage collectives + the
// exposed end-of-step DP collectives, pp_comm = p2p time on the critical
// chain (at most makespan - busy), bubble = the rest of the pipeline makespan,
// optimizer = the optimizer step on the rank that ends last (the CPU AdamW
// with offload), offload = exposed host<->GPU copies of CPU offload
// (docs/offload.md), other = 0 (no launch-overhead term yet). step_s is
// defined as the sum of the parts.
//
// Preconditions (planner/rules.h CheckPlan passes): degrees >= 1, a legal
// pipeline split (PipelineSplitRule, common/plan.h: layers(r,c) =
// ChunkLayers(c*PP + r), so uneven stages or an accounted embedding/loss give
// a rank, or a chunk, its own durations),
// global_batch == micro_batch * grad_accum * dp. EstimateTime checks the ones
// the arithmetic needs and returns InvalidArgument naming the field; the
// TimeModel::StepSeconds hot path checks nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/model_spec.h"
#include "common/plan.h"
#include "simulator/estimate.h"
#include "simulator/derivation.h"
#include "simulator/hardware.h"

namespace p3d {

struct TimeEstimate {
  TimeBreakdown time;                   // seconds per optimizer step; parts sum to step_s
  double tokens_per_s = 0;              // global_batch * seq / step_s
  double samples_per_s = 0;             // global_batch / step_s
  double tflops_per_gpu = 0;            // model_flops / step_s / GPUs / 1e12
  double mfu = 0;                       // model_flops / (step_s * GPUs * peak)
  double hfu = 0;                       // hardware_flops / (step_s * GPUs * peak)
  double model_flops = 0;               // per step, all GPUs (models/flops.h)
  double hardware_flops = 0;            // per step, all GPUs, incl. recompute
  double flop_floor_s = 0;              // model_flops / (GPUs * peak): no plan can step faster
  int critical_stage = 0;               // pipeline rank the breakdown describes
  std::vector<TimelineEvent> timeline;  // per pipeline rank, when requested
};

// Built once per search (model, training recipe, cluster); caches per-shape
// layer costs keyed by (tp, micro_batch, recompute, sp) and schedules keyed by
// (pp, vpp, m), and reuses its simulation buffers, so StepSeconds allocates
// nothing once warm. Not thread-safe: one TimeModel per thread.
class TimeModel {
 public:
  TimeModel(const ModelSpec& model, const TrainingSpec& training, const ClusterSpec& cluster);
  ~TimeModel();
  TimeModel(const TimeModel&) = delete;
  TimeModel& operator=(const TimeModel&) = delete;

  // Step seconds only (the ranking key). Precondition: the plan is legal.
  double StepSeconds(const Plan& plan);
  // A lower bound of StepSeconds in O(PP*VPP), without the pipeline
  // simulation: max over ranks of (forward fill before the rank + its busy
  // time + its end-of-step reduction and optimizer). The planner can skip
  // plans whose bound is already slower than its K-th best.
  double StepLowerBound(const Plan& plan);
  // A weaker bound still, O(PP) from the cached per-shape costs, without
  // preparing the plan: StepFloor <= StepLowerBound. Every rank is busy at
  // least m times its kernels and TP collectives per micro-batch, so the step
  // is at least the average of that over the ranks, and at least the last
  // rank's, after the forward kernels of every earlier rank's first chunk.
  double StepFloor(const Plan& plan);
  // Everything, checked: errors name the plan field at fault.
  StatusOr<TimeEstimate> Evaluate(const Plan& plan, bool with_timeline = false);
  // The derivation of Evaluate's figures, recorded while computing them
  // (simulator/derivation.h): the layer's kernels and TP collectives, the
  // chunks of the busiest rank, the end of step of the rank that ends it; the
  // terms marked `part` are the TimeBreakdown's and sum to the step.
  StatusOr<std::vector<DerivedTerm>> Explain(const Plan& plan);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot wrappers (build a TimeModel each call).
StatusOr<TimeEstimate> EstimateTime(const ModelSpec& model, const TrainingSpec& training,
                                    const ClusterSpec& cluster, const Plan& plan);
StatusOr<std::vector<DerivedTerm>> ExplainTime(const ModelSpec& model, const TrainingSpec& training,
                                            const ClusterSpec& cluster, const Plan& plan);

// A claimed step time against the FLOP floor: the cluster at 100% of peak
// cannot do one step of model FLOPs faster than floor_s.
struct StepClaimCheck {
  double claimed_s = 0;
  double floor_s = 0;        // ModelFlopsPerStep / (GPUs * peak)
  double required_peak = 0;  // floor_s / claimed_s: multiple of the cluster's peak the claim needs
  bool possible = false;     // claimed_s >= floor_s
};
StepClaimCheck CheckStepClaim(const ModelSpec& model, const TrainingSpec& training,
                              const ClusterSpec& cluster, double claimed_step_s);

}  // namespace p3d
