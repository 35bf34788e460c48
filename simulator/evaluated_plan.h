// PlanRequest and EvaluatedPlan: what the planner's front ends (table, JSON,
// exporters, HTML report) consume. A PlanRequest is the user's question; an
// EvaluatedPlan is one answer with the simulator's prediction attached.
#pragma once

#include <vector>

#include "models/model_spec.h"
#include "common/plan.h"
#include "simulator/estimate.h"
#include "simulator/framework_profile.h"
#include "simulator/hardware.h"

namespace p3d {

struct PlanRequest {
  ModelSpec model;
  TrainingSpec training;  // training.framework: the profile's mechanisms the simulator reads
  ClusterSpec cluster;    // cluster.num_gpus = GPUs the plan uses
  // The framework profile the plan is predicted for, with its sources (saved
  // plans carry it); SetFramework keeps training.framework equal to its.
  FrameworkProfile framework = P3dFrameworkProfile();
};

// Chooses `profile` for `request`: its mechanisms, rules and recipe defaults
// (ApplyFrameworkProfile) on the training spec.
inline void SetFramework(const FrameworkProfile& profile, PlanRequest* request) {
  request->framework = profile;
  ApplyFrameworkProfile(profile, &request->training);
}

// Predictions for one plan (every figure is a prediction of the simulator,
// never a measurement). docs/metrics.md defines each figure.
struct EvaluatedPlan {
  Plan plan;
  bool fits = false;            // peak stage total <= GPU memory (and, with offload,
                                // host bytes per node <= host memory)
  const char* runs_rule = nullptr;  // the framework runs it (nullptr), else the "gap" rule it
                                    // breaks (common/framework.h; p3d: what p3d-run lacks)
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
