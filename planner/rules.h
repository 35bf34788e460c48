// Legality rules for a Plan. Each rule has a stable id that error messages
// cite, so a user learns exactly which constraint their request broke:
//
//   gpus=dp*tp*cp*pp     DP x TP x CP x PP must equal the GPU count
//   seq%(2*cp)           context parallel cuts each sequence into 2 x CP chunks
//                        (load-balanced causal attention, Transformer Engine's p2p ring)
//   cp=>fused            context parallel needs the fused attention core
//   zero_shard=>zero>=1  a ZeRO shard group (HSDP) needs ZeRO >= 1
//   zero_shard|dp*cp     the shard group is a divisor of DP x CP in 2..DP x CP/2
//                        (0 = the whole DP x CP group)
//   heads%tp             attention heads divisible by TP
//   kv_heads%tp          key/value heads (GQA groups) divisible by TP
//   ffn%tp               FFN size divisible by TP
//   tp<=innermost_tier   TP group inside one domain of the network's innermost
//                        tier (NVLink: a DGX node, an NVL72 rack; unless
//                        allowed across, --allow-tp-across-nodes)
//   layers%pp            layers divisible by PP (even stages; else set the
//                        first/last stage's layers)
//   layers%(pp*vpp)      layers divisible by PP x VPP (interleaved chunks)
//   Uneven stages (Plan::first_stage_layers / last_stage_layers, Megatron's
//   --decoder-first/last-pipeline-num-layers; common/plan.h PipelineSplitRule):
//   stage_layers<=layers first and last stage's layers in 0..L (0 = not set)
//   uneven=>pp>1         a first/last stage count needs a pipeline
//   first+last=>pp>=3    both set need a middle stage (Megatron divides the
//                        rest by PP-2); at PP=2 set one
//   middle>=1            every middle stage keeps at least one layer
//   middle%stages        the remaining layers split evenly over the middle
//                        stages (Megatron's TransformerConfig check)
//   uneven%vpp           with VPP > 1 the first, middle and last stage's
//                        layers are multiples of VPP (Megatron-Core)
//   Embedding/loss counted as split layers (Plan::account_for_embedding /
//   account_for_loss, Megatron-Core's --account-for-embedding/loss-in-pipeline-split;
//   common/plan.h ChunkLayers):
//   account=>even        not with set first/last stage layers (Megatron ignores it then)
//   account=>pp>1        needs a pipeline
//   (layers+edges)%(pp*vpp)  L + accounted embedding + loss divisible by PP x VPP
//   vpp>1=>pp>1          virtual stages need a pipeline
//   vpp>1=>m%pp          interleaved 1F1B needs micro-batches divisible by PP (Megatron)
//   batch=mb*ga*dp       global batch == micro-batch x grad-accum x DP, exactly
//   zero<=3              ZeRO stage in 0..3
//   zero>0=>dp>1         ZeRO shards over DP x CP; with DP x CP = 1 it is ZeRO-0 (not listed twice),
//                        except with offload, where DP=1 ZeRO-1/2 (optimizer offload)
//                        and ZeRO-3 (parameter offload) are distinct plans, as on
//                        DeepSpeed's single-GPU ZeRO-Offload
//   offload=>zero>=1     optimizer offload needs ZeRO >= 1 (DeepSpeed offload_optimizer
//                        is a ZeRO stage 1-3 feature)
//   offload_params=>zero3 parameter offload needs ZeRO-3 (DeepSpeed offload_param)
//   ep=>moe              expert parallelism (EP > 1) needs an MoE model
//   experts%ep           routed experts per layer divisible by EP
//   dp*cp*tp%(ep*etp)    EP x expert TP divides DP x CP x TP (carved from them, Megatron-Core;
//                        with the default expert TP = TP: EP divides DP)
//   moe_ffn%etp          expert FFN width divisible by the expert TP
//   ep=>zero!=2          p3d models EP with ZeRO 0/1 (MCore's distributed optimizer) and ZeRO-3 (the
//                        experts FSDP-sharded over the expert-data-parallel group), no hybrid sharding
//   tp-pp-dp=>cp=1,ep=1  the tp-pp-dp placement (Plan::placement, Megatron's
//                        --use-tp-pp-dp-mapping) with no CP or EP, as Megatron asks
//   sp=>tp>1             sequence parallel splits along TP
//   seq<=positions       sequence fits the learned position table (GPT-2 style, not ALiBi)
//   fp8=>fp8_tensor_cores an FP8 recipe (TrainingSpec::fp8) needs a GPU with FP8 tensor
//                        cores (GpuSpec::fp8_peak_flops > 0: not A100, V100)
//   mxfp8=>block_scaled_tensor_cores  the mxfp8 recipe needs block-scaled FP8
//                        tensor cores (GpuSpec::mxfp8: Blackwell)
//   (A framework that cannot run a recipe: rule fp8-recipe, common/framework.h Fp8RuleBroken.)
//   micro_batch>=1, grad_accum>=1, degrees>=1
#pragma once

#include <string>

#include "common/status.h"
#include "simulator/evaluated_plan.h"

namespace p3d {

struct RuleOptions {
  bool allow_tp_across_nodes = false;
};

// With DP = 1, whether the plan's ZeRO stage (>= 1) still changes anything:
// only with offload (rule zero>0=>dp>1).
bool ZeroMeaningfulAtDp1(const Plan& plan);

// The context-parallel rules (seq%(2*cp), cp=>fused) and the hybrid-sharding
// rules (zero_shard=>zero>=1, zero_shard|dp*cp), each the id of the first
// rule broken or nullptr; part of FailedRule, apart for the search's inner loops.
const char* ContextParallelRule(const PlanRequest& request, const Plan& plan, std::string* detail = nullptr);
const char* HybridShardRule(const Plan& plan, std::string* detail = nullptr);

// Returns OK if `plan` is legal for `request`, else Infeasible naming the
// first rule that fails (message starts with "rule <id>: ").
Status CheckPlan(const PlanRequest& request, const Plan& plan, const RuleOptions& options = {});

// The id of the first rule `plan` breaks, or nullptr when it is legal; the
// message is written to *detail only when detail is non-null (no formatting
// otherwise: the search calls this for every rejected combination).
const char* FailedRule(const PlanRequest& request, const Plan& plan, const RuleOptions& options,
                      std::string* detail = nullptr);

}  // namespace p3d
