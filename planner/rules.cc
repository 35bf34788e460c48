#include "planner/rules.h"

#include <fmt/format.h>

namespace p3d {
namespace {

Status Fail(const char* rule, const std::string& detail) {
  return Status::Infeasible(fmt::format("rule {}: {}", rule, detail));
}

}  // namespace

bool ZeroMeaningfulAtDp1(const Plan& p) {
  return (p.offload == Offload::kOptimizer && p.zero <= 2) ||
         (p.offload == Offload::kOptimizerAndParams && p.zero == 3);
}

Status CheckPlan(const PlanRequest& r, const Plan& p, const RuleOptions& options) {
  const ModelSpec& m = r.model;
  if (p.dp < 1 || p.tp < 1 || p.pp < 1 || p.vpp < 1)
    return Fail("degrees>=1", fmt::format("DP, TP, PP, VPP must be >= 1 (got DP{} TP{} PP{} VPP{})",
                                          p.dp, p.tp, p.pp, p.vpp));
  if (p.micro_batch < 1) return Fail("micro_batch>=1", fmt::format("micro-batch {} < 1", p.micro_batch));
  if (p.grad_accum < 1) return Fail("grad_accum>=1", fmt::format("grad-accum {} < 1", p.grad_accum));
  if (int64_t{p.dp} * p.tp * p.pp != r.cluster.num_gpus)
    return Fail("gpus=dp*tp*pp", fmt::format("DP{} x TP{} x PP{} = {} GPUs, but the cluster has {}",
                                             p.dp, p.tp, p.pp, int64_t{p.dp} * p.tp * p.pp,
                                             r.cluster.num_gpus));
  if (m.heads % p.tp != 0)
    return Fail("heads%tp", fmt::format("{} attention heads are not divisible by TP={}", m.heads, p.tp));
  if (m.kv_heads % p.tp != 0)
    return Fail("kv_heads%tp", fmt::format("{} key/value heads are not divisible by TP={}", m.kv_heads, p.tp));
  if (m.ffn % p.tp != 0)
    return Fail("ffn%tp", fmt::format("FFN size {} is not divisible by TP={}", m.ffn, p.tp));
  if (!options.allow_tp_across_nodes && p.tp > r.cluster.node.gpus_per_node)
    return Fail("tp<=gpus_per_node", fmt::format("TP={} would span nodes of {} GPUs", p.tp,
                                                 r.cluster.node.gpus_per_node));
  if (m.layers % p.pp != 0)
    return Fail("layers%pp", fmt::format("{} layers are not divisible by PP={}", m.layers, p.pp));
  if (m.layers % (int64_t{p.pp} * p.vpp) != 0)
    return Fail("layers%(pp*vpp)", fmt::format("{} layers are not divisible by PP{} x VPP{} = {}",
                                               m.layers, p.pp, p.vpp, p.pp * p.vpp));
  if (p.vpp > 1 && p.pp == 1)
    return Fail("vpp>1=>pp>1", fmt::format("VPP={} needs a pipeline (PP > 1)", p.vpp));
  if (p.vpp > 1 && p.grad_accum % p.pp != 0)
    return Fail("vpp>1=>m%pp", fmt::format("interleaved 1F1B needs micro-batches ({}) divisible by PP={}",
                                           p.grad_accum, p.pp));
  if (p.global_batch() != r.training.global_batch)
    return Fail("batch=mb*ga*dp",
                fmt::format("micro-batch {} x grad-accum {} x DP {} = {}, but the global batch is {}",
                            p.micro_batch, p.grad_accum, p.dp, p.global_batch(), r.training.global_batch));
  if (p.zero < 0 || p.zero > 3) return Fail("zero<=3", fmt::format("ZeRO stage {} is not in 0..3", p.zero));
  if (p.offload != Offload::kNone && p.zero < 1)
    return Fail("offload=>zero>=1", fmt::format("offload {} needs ZeRO >= 1 (DeepSpeed's ZeRO-Offload), "
                                                "got ZeRO-{}", OffloadName(p.offload), p.zero));
  if (p.offload == Offload::kOptimizerAndParams && p.zero != 3)
    return Fail("offload_params=>zero3",
                fmt::format("parameter offload needs ZeRO-3 (parameters sharded), got ZeRO-{}", p.zero));
  if (p.zero > 0 && p.dp == 1 && !ZeroMeaningfulAtDp1(p))
    return Fail("zero>0=>dp>1",
                fmt::format("ZeRO-{} shards over DP, but DP=1 (use ZeRO-0; with DP=1 only offload plans "
                            "use ZeRO: 1/2 with --offload optimizer, 3 with --offload params)",
                            p.zero));
  if (p.sequence_parallel && p.tp == 1)
    return Fail("sp=>tp>1", "sequence parallel splits activations along TP, but TP=1");
  if (m.arch == Arch::kGpt2 && r.training.seq > m.max_positions)
    return Fail("seq<=positions", fmt::format("sequence {} exceeds the model's {} learned positions",
                                              r.training.seq, m.max_positions));
  return Status::Ok();
}

}  // namespace p3d
