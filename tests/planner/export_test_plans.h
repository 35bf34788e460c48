// Requests and plans shared by the exporter and report tests. Model shapes
// come from the zoo (the public configs: GPT-2 small, Llama-2-7B, Llama-2-70B).
#pragma once

#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "common/status.h"
#include "models/zoo.h"
#include "simulator/evaluated_plan.h"

namespace p3d::testing {

inline ModelSpec Gpt2Small() {
  return ZooModel("gpt2-small").value();
}

inline ModelSpec Llama2_7B() {
  return ZooModel("llama-2-7b").value();
}

inline ModelSpec Llama2_70B() {
  return ZooModel("llama-2-70b").value();
}

inline Plan MakePlan(int dp, int tp, int pp, int vpp, int zero, int64_t mb, int64_t ga,
                     Recompute rc = Recompute::kNone, bool sp = false) {
  Plan p;
  p.dp = dp;
  p.tp = tp;
  p.pp = pp;
  p.vpp = vpp;
  p.zero = zero;
  p.micro_batch = mb;
  p.grad_accum = ga;
  p.recompute = rc;
  p.sequence_parallel = sp;
  return p;
}

// A request whose GPU count and global batch match `plan` exactly, predicted
// for the framework profile `framework` (the one an exporter writes).
inline PlanRequest RequestFor(const ModelSpec& model, const Plan& plan, int64_t seq = 2048,
                              int gpus_per_node = 8, const std::string& framework = "p3d") {
  PlanRequest r;
  SetFramework(LoadFrameworkProfile(framework).value(), &r);
  r.model = model;
  r.training.seq = seq;
  r.training.global_batch = plan.global_batch();
  r.cluster.num_gpus = plan.gpus();
  r.cluster.node.gpus_per_node = gpus_per_node;
  r.cluster.gpu.name = "h100-sxm";
  r.cluster.gpu.description = "NVIDIA H100 SXM5 80GB";
  r.cluster.gpu.memory_bytes = 80.0 * 1024 * 1024 * 1024;
  return r;
}

inline EvaluatedPlan Evaluated(const Plan& plan) {
  EvaluatedPlan e;
  e.plan = plan;
  return e;
}

// A labelled case for parameterised exporter tests.
struct ExportCase {
  std::string name;
  ModelSpec model;
  Plan plan;
  int64_t seq = 2048;
};
inline void PrintTo(const ExportCase& c, std::ostream* os) { *os << c.name; }

// An export refused as infeasible, its message naming `needle` (the rule).
inline void ExpectRefused(const Status& s, const std::string& needle) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kInfeasible);
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

}  // namespace p3d::testing
