// Requests and plans shared by the exporter and report tests. Model shapes
// are the public configs: GPT-2 small (HF gpt2 config.json), Llama-2-7B and
// Llama-2-70B (HF meta-llama config.json).
#pragma once

#include <ostream>
#include <string>

#include "planner/evaluated_plan.h"

namespace p3d::testing {

inline ModelSpec Gpt2Small() {
  ModelSpec m;
  m.name = "gpt2";
  m.arch = Arch::kGpt2;
  m.layers = 12;
  m.hidden = 768;
  m.ffn = 3072;
  m.heads = 12;
  m.kv_heads = 12;
  m.vocab = 50257;
  m.max_positions = 1024;
  m.tie_embeddings = true;
  return m;
}

inline ModelSpec Llama2_7B() {
  ModelSpec m;
  m.name = "llama-2-7b";
  m.arch = Arch::kLlama;
  m.layers = 32;
  m.hidden = 4096;
  m.ffn = 11008;
  m.heads = 32;
  m.kv_heads = 32;
  m.vocab = 32000;
  m.max_positions = 4096;
  return m;
}

inline ModelSpec Llama2_70B() {
  ModelSpec m = Llama2_7B();
  m.name = "llama-2-70b";
  m.layers = 80;
  m.hidden = 8192;
  m.ffn = 28672;
  m.heads = 64;
  m.kv_heads = 8;
  return m;
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

// A request whose GPU count and global batch match `plan` exactly.
inline PlanRequest RequestFor(const ModelSpec& model, const Plan& plan, int64_t seq = 2048,
                              int gpus_per_node = 8) {
  PlanRequest r;
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

}  // namespace p3d::testing
