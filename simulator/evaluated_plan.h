// PlanRequest and EvaluatedPlan: what the planner's front ends (table, JSON,
// exporters, HTML report) consume. A PlanRequest is the user's question; an
// EvaluatedPlan is one answer with the simulator's prediction attached.
#pragma once

#include <vector>

#include "models/model_spec.h"
#include "common/plan.h"
#include "simulator/estimate.h"
#include "simulator/hardware.h"

namespace p3d {

struct PlanRequest {
  ModelSpec model;
  TrainingSpec training;
  ClusterSpec cluster;  // cluster.num_gpus = GPUs the plan uses
};

// Predictions for one plan (every figure is a prediction of the simulator,
// never a measurement). docs/metrics.md defines each figure.
struct EvaluatedPlan {
  Plan plan;
  bool fits = false;            // peak stage total <= GPU memory (and, with offload,
                                // host bytes per node <= host memory)
  const char* runs_rule = nullptr;  // p3d-run runs it (nullptr), else the executor-support
                                    // rule it breaks (common/executor_support.h)
  MemoryEstimate memory;        // per stage; memory.peak() decides fit
  TimeBreakdown time;           // slowest pipeline rank, seconds per step
  double tokens_per_s = 0;      // global_batch * seq / step_s
  double samples_per_s = 0;     // global_batch / step_s
  double tflops_per_gpu = 0;    // model FLOPs / step_s / GPUs / 1e12
  double mfu = 0;               // model FLOPs / (step_s * GPUs * peak)
  double hfu = 0;               // hardware FLOPs (incl. recompute) / (step_s * GPUs * peak)
  std::vector<TimelineEvent> timeline;  // predicted pipeline timeline (filled on request)
};

}  // namespace p3d
