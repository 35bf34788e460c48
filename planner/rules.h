// Legality rules for a Plan. Each rule has a stable id that error messages
// cite, so a user learns exactly which constraint their request broke:
//
//   gpus=dp*tp*pp        DP x TP x PP must equal the GPU count
//   heads%tp             attention heads divisible by TP
//   kv_heads%tp          key/value heads (GQA groups) divisible by TP
//   ffn%tp               FFN size divisible by TP
//   tp<=gpus_per_node    TP group inside one node (unless allowed across nodes)
//   layers%pp            layers divisible by PP (even stages)
//   layers%(pp*vpp)      layers divisible by PP x VPP (interleaved chunks)
//   vpp>1=>pp>1          virtual stages need a pipeline
//   vpp>1=>m%pp          interleaved 1F1B needs micro-batches divisible by PP (Megatron)
//   batch=mb*ga*dp       global batch == micro-batch x grad-accum x DP, exactly
//   zero<=3              ZeRO stage in 0..3
//   zero>0=>dp>1         ZeRO shards over DP; with DP=1 it is ZeRO-0 (not listed twice)
//   sp=>tp>1             sequence parallel splits along TP
//   seq<=positions       sequence fits the learned position table (GPT-2 style)
//   micro_batch>=1, grad_accum>=1, degrees>=1
#pragma once

#include "common/status.h"
#include "planner/evaluated_plan.h"

namespace p3d {

struct RuleOptions {
  bool allow_tp_across_nodes = false;
};

// Returns OK if `plan` is legal for `request`, else Infeasible naming the
// first rule that fails (message starts with "rule <id>: ").
Status CheckPlan(const PlanRequest& request, const Plan& plan, const RuleOptions& options = {});

}  // namespace p3d
