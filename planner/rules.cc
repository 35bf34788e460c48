#include "planner/rules.h"

#include <fmt/format.h>

#include "common/named_rule.h"

namespace p3d {

bool ZeroMeaningfulAtDp1(const Plan& p) {
  return (p.offload == Offload::kOptimizer && p.zero <= 2) ||
         (p.offload == Offload::kOptimizerAndParams && p.zero == 3);
}

const char* ContextParallelRule(const PlanRequest& r, const Plan& p, std::string* detail) {
  if (p.cp == 1) return nullptr;
  // Transformer Engine's p2p ring splits each sequence into 2*CP chunks
  // (context_parallel.py: "Sequence length per GPU needs to be divisible by 2").
  if (r.training.seq % (2 * int64_t{p.cp}) != 0)
    return RuleFailed(detail, "seq%(2*cp)", [&] {
      return fmt::format(
          "context parallel cuts each sequence into 2 x CP = {} load-balanced chunks, but the "
          "sequence {} is not divisible by it",
          2 * p.cp, r.training.seq);
    });
  if (p.attention != AttentionImpl::kFused)
    return RuleFailed(detail, "cp=>fused", [&] {
      return fmt::format(
          "context parallel (CP={}) runs the fused attention core on each K/V chunk of the ring "
          "(Transformer Engine: FusedAttention or flash-attn only), got attention {}",
          p.cp, AttentionImplName(p.attention));
    });
  return nullptr;
}

const char* HybridShardRule(const Plan& p, std::string* detail) {
  if (p.zero_shard == 0) return nullptr;
  if (p.zero < 1)
    return RuleFailed(detail, "zero_shard=>zero>=1", [&] {
      return fmt::format("a ZeRO shard group ({}) needs ZeRO >= 1, got ZeRO-0", p.zero_shard);
    });
  const int group = p.grad_group();
  if (p.zero_shard < 2 || p.zero_shard >= group || group % p.zero_shard != 0)
    return RuleFailed(detail, "zero_shard|dp*cp", [&] {
      return fmt::format(
          "the ZeRO shard group ({}) must be a divisor of DP x CP = {} between 2 and {} (0 = the "
          "whole group; 1 would shard nothing)",
          p.zero_shard, group, group / 2);
    });
  return nullptr;
}

const char* FailedRule(const PlanRequest& r, const Plan& p, const RuleOptions& options,
                       std::string* detail) {
  const ModelSpec& m = r.model;
  if (p.dp < 1 || p.tp < 1 || p.cp < 1 || p.pp < 1 || p.vpp < 1)
    return RuleFailed(detail, "degrees>=1", [&] {
      return fmt::format("DP, TP, CP, PP, VPP must be >= 1 (got DP{} TP{} CP{} PP{} VPP{})", p.dp,
                         p.tp, p.cp, p.pp, p.vpp);
    });
  if (p.micro_batch < 1)
    return RuleFailed(detail, "micro_batch>=1",
                      [&] { return fmt::format("micro-batch {} < 1", p.micro_batch); });
  if (p.grad_accum < 1)
    return RuleFailed(detail, "grad_accum>=1",
                      [&] { return fmt::format("grad-accum {} < 1", p.grad_accum); });
  if (int64_t{p.dp} * p.tp * p.cp * p.pp != r.cluster.num_gpus)
    return RuleFailed(detail, "gpus=dp*tp*cp*pp", [&] {
      return fmt::format("DP{} x TP{} x CP{} x PP{} = {} GPUs, but the cluster has {}", p.dp, p.tp,
                         p.cp, p.pp, int64_t{p.dp} * p.tp * p.cp * p.pp, r.cluster.num_gpus);
    });
  if (const char* rule = ContextParallelRule(r, p, detail)) return rule;
  if (m.heads % p.tp != 0)
    return RuleFailed(detail, "heads%tp", [&] {
      return fmt::format("{} attention heads are not divisible by TP={}", m.heads, p.tp);
    });
  if (m.kv_heads % p.tp != 0)
    return RuleFailed(detail, "kv_heads%tp", [&] {
      return fmt::format("{} key/value heads are not divisible by TP={}", m.kv_heads, p.tp);
    });
  if (m.ffn % p.tp != 0)
    return RuleFailed(detail, "ffn%tp", [&] {
      return fmt::format("FFN size {} is not divisible by TP={}", m.ffn, p.tp);
    });
  if (const int domain = InnermostDomainGpus(r.cluster.network);
      !options.allow_tp_across_nodes && domain > 0 && p.tp > domain)
    return RuleFailed(detail, "tp<=innermost_tier", [&] {
      return fmt::format("TP={} would span domains of the innermost network tier ({}, {} GPUs each)", p.tp,
                         r.cluster.network.front().link.name, domain);
    });
  if (const char* rule = PipelineSplitRule(p, m.layers, detail)) return rule;
  if (p.vpp > 1 && p.pp == 1)
    return RuleFailed(detail, "vpp>1=>pp>1",
                      [&] { return fmt::format("VPP={} needs a pipeline (PP > 1)", p.vpp); });
  if (p.vpp > 1 && p.grad_accum % p.pp != 0)
    return RuleFailed(detail, "vpp>1=>m%pp", [&] {
      return fmt::format("interleaved 1F1B needs micro-batches ({}) divisible by PP={}",
                         p.grad_accum, p.pp);
    });
  if (p.global_batch() != r.training.global_batch)
    return RuleFailed(detail, "batch=mb*ga*dp", [&] {
      return fmt::format("micro-batch {} x grad-accum {} x DP {} = {}, but the global batch is {}",
                         p.micro_batch, p.grad_accum, p.dp, p.global_batch(),
                         r.training.global_batch);
    });
  if (p.zero < 0 || p.zero > 3)
    return RuleFailed(detail, "zero<=3",
                      [&] { return fmt::format("ZeRO stage {} is not in 0..3", p.zero); });
  if (p.offload != Offload::kNone && p.zero < 1)
    return RuleFailed(detail, "offload=>zero>=1", [&] {
      return fmt::format(
          "offload {} needs ZeRO >= 1 (DeepSpeed's ZeRO-Offload), "
          "got ZeRO-{}",
          OffloadName(p.offload), p.zero);
    });
  if (p.offload == Offload::kOptimizerAndParams && p.zero != 3)
    return RuleFailed(detail, "offload_params=>zero3", [&] {
      return fmt::format("parameter offload needs ZeRO-3 (parameters sharded), got ZeRO-{}",
                         p.zero);
    });
  if (p.zero > 0 && p.grad_group() == 1 && !ZeroMeaningfulAtDp1(p))
    return RuleFailed(detail, "zero>0=>dp>1", [&] {
      return fmt::format(
          "ZeRO-{} shards over DP x CP, but DP x CP = 1 (use ZeRO-0; with DP x CP = 1 only "
          "offload plans use ZeRO: 1/2 with --offload optimizer, 3 with --offload params)",
          p.zero);
    });
  if (p.ep < 1)
    return RuleFailed(detail, "degrees>=1", [&] { return fmt::format("EP={} must be >= 1", p.ep); });
  if (p.ep > 1 && !m.moe())
    return RuleFailed(detail, "ep=>moe", [&] {
      return fmt::format("expert parallelism (EP={}) needs an MoE model; {} has no experts", p.ep, m.name);
    });
  if (p.ep > 1 && m.experts % p.ep != 0)
    return RuleFailed(detail, "experts%ep", [&] {
      return fmt::format("{} experts per layer are not divisible by EP={}", m.experts, p.ep);
    });
  if (p.etp < 0)
    return RuleFailed(detail, "degrees>=1", [&] { return fmt::format("ETP={} must be >= 1 (0 = TP)", p.etp); });
  if ((p.grad_group() * p.tp) % (p.ep * p.expert_tp()) != 0)
    return RuleFailed(detail, "dp*cp*tp%(ep*etp)", [&] {
      return fmt::format("EP={} x expert TP={} is carved from DP={} x CP={} x TP={} (Megatron-Core): it must divide it",
                         p.ep, p.expert_tp(), p.dp, p.cp, p.tp);
    });
  if (m.moe() && m.expert_ffn() % p.expert_tp() != 0)
    return RuleFailed(detail, "moe_ffn%etp", [&] {
      return fmt::format("expert FFN size {} is not divisible by the expert TP={}", m.expert_ffn(), p.expert_tp());
    });
  if (p.ep > 1 && (p.zero == 2 || p.zero_shard > 0))
    return RuleFailed(detail, "ep=>zero!=2", [&] {
      return fmt::format("p3d models expert parallelism with ZeRO 0/1 (Megatron-Core's distributed optimizer) "
                         "and ZeRO-3 (FSDP of the experts over the whole expert-data-parallel group), got "
                         "ZeRO-{}{}", p.zero,
                         p.zero_shard > 0 ? fmt::format(" with shard groups of {}", p.zero_shard) : "");
    });
  if (const char* rule = HybridShardRule(p, detail)) return rule;
  if (p.placement == Placement::kPpBeforeDp && (p.cp > 1 || p.ep > 1))
    return RuleFailed(detail, "tp-pp-dp=>cp=1,ep=1", [&] {
      return fmt::format("the tp-pp-dp placement (Megatron --use-tp-pp-dp-mapping) takes no context or expert "
                         "parallelism (Megatron: \"Make sure EP and CP aren't used with this option\"), got CP={} EP={}",
                         p.cp, p.ep);
    });
  if (p.sequence_parallel && p.tp == 1)
    return RuleFailed(detail, "sp=>tp>1", [&] {
      return std::string("sequence parallel splits activations along TP, but TP=1");
    });
  if (m.learned_positions() && r.training.seq > m.max_positions)
    return RuleFailed(detail, "seq<=positions", [&] {
      return fmt::format("sequence {} exceeds the model's {} learned positions", r.training.seq,
                         m.max_positions);
    });
  if (r.training.fp8 != Fp8Recipe::kOff && r.cluster.gpu.fp8_peak_flops <= 0)
    return RuleFailed(detail, "fp8=>fp8_tensor_cores", [&] {
      return fmt::format("FP8 recipe {} needs FP8 tensor cores; {} has none (Hopper, Ada and Blackwell do)",
                         Fp8RecipeName(r.training.fp8), r.cluster.gpu.name);
    });
  if (r.training.fp8 == Fp8Recipe::kMxfp8 && !r.cluster.gpu.mxfp8)
    return RuleFailed(detail, "mxfp8=>block_scaled_tensor_cores", [&] {
      return fmt::format(
          "FP8 recipe mxfp8 needs block-scaled (MX) FP8 tensor cores (Blackwell); {} has none: use "
          "delayed, tensorwise or blockwise",
          r.cluster.gpu.name);
    });
  return nullptr;
}

Status CheckPlan(const PlanRequest& request, const Plan& plan, const RuleOptions& options) {
  std::string detail;
  const char* rule = FailedRule(request, plan, options, &detail);
  if (rule == nullptr) return Status::Ok();
  return Status::Infeasible(fmt::format("rule {}: {}", rule, detail));
}

}  // namespace p3d
