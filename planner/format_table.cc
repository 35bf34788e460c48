#include "planner/format_table.h"

#include <fmt/format.h>

#include "common/units.h"
#include "simulator/framework_profile.h"

namespace p3d {

std::string FormatRequest(const PlanRequest& r) {
  const ClusterSpec& c = r.cluster;
  std::string out = fmt::format("model    {} ({}, {:.2f}B parameters, L={} H={} NH={} KV={} F={} V={})\n",
                                r.model.name, ArchName(r.model.arch), r.model.TotalParams() / 1e9,
                                r.model.layers, r.model.hidden, r.model.heads, r.model.kv_heads,
                                r.model.ffn, r.model.vocab);
  if (r.model.moe())
    out += fmt::format("         MoE: {} routed experts top-{}{} of width {}, {} of {} layers MoE; {:.2f}B active "
                       "parameters; routing assumed balanced (moe.balanced_routing)\n",
                       r.model.experts, r.model.experts_per_token,
                       r.model.shared_experts > 0 ? fmt::format(" + {} shared", r.model.shared_experts) : "",
                       r.model.expert_ffn(), r.model.MoeLayers(), r.model.layers, r.model.ActiveParams() / 1e9);
  // The network, where it is more than nodes joined by one network.
  const std::string network = IsNodeNetwork(c.network, c.node.gpus_per_node)
                                  ? ""
                                  : fmt::format("; network {}", DescribeNetwork(c.network));
  out += fmt::format("cluster  {} x {} ({:.1f} GiB each), {} nodes of {} GPUs{} [{}]\n", c.num_gpus, c.gpu.name,
                     ToGiB(c.gpu.memory_bytes), c.nodes(), c.node.gpus_per_node, network, c.source);
  const Precision& p = r.training.precision;
  out += fmt::format("training global batch {} x seq {} = {} tokens/step; {} bytes/param of model state "
                     "(weights {} + grads {} + master {} + Adam {})\n",
                     r.training.global_batch, r.training.seq, r.training.global_batch * r.training.seq,
                     r.training.StateBytesPerParam(), r.training.StoredParamBytes(), p.grad_bytes,
                     p.master_bytes, p.optimizer_bytes);
  if (r.training.fp8 != Fp8Recipe::kOff)
    out += fmt::format("fp8      recipe {}: q/k/v, out-proj and MLP GEMMs in FP8 ({:.0f} TFLOP/s dense peak); "
                       "attention core, norms, embedding and LM head in bf16\n",
                       Fp8RecipeName(r.training.fp8), c.gpu.fp8_peak_flops / 1e12);
  out += "framework " + FrameworkSummary(r.framework) + "\n";
  return out;
}

std::string FormatPlanTable(const PlanRequest& r, const SearchResult& res) {
  std::string out = fmt::format("searched {} legal plans in {:.3f} s; {} fit in {:.1f} GiB per GPU\n",
                                res.candidates, res.seconds, res.fitting, ToGiB(r.cluster.gpu.memory_bytes));
  if (res.fitting == 0)
    out += "NO PLAN FITS: the closest misses follow (smallest peak memory first)\n";
  // MoE models get an EP column after PP.
  const bool moe = r.model.moe();
  out += fmt::format("{:>3} {:>5} {:>3} {:>3} {:>3}{} {:>3} {:>6} {:>4} {:>5} {:>9} {:>2} {:>9} | {:>8} {:>9} {:>5} | "
                     "{:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>9} {:>4} {}\n",
                     "#", "DP", "TP", "CP", "PP", moe ? fmt::format(" {:>3}", "EP") : "", "VPP", "ZeRO", "mb", "ga", "recompute", "SP", "offload", "step s",
                     "tokens/s", "MFU", "weights", "grads", "optim", "activ", "buffer", "runtm", "total",
                     "host/node", "fits", "runs");
  int rank = 0;
  std::string uneven;  // plans with uneven pipeline stages: their layers per stage
  std::string pp_first;  // plans with the tp-pp-dp placement
  for (const EvaluatedPlan& e : res.plans) {
    const Plan& p = e.plan;
    MemoryBreakdown m = e.memory.peak();
    std::string step = e.fits ? fmt::format("{:.3f}", e.time.step_s) : "-";
    std::string tps = e.fits ? fmt::format("{:.0f}", e.tokens_per_s) : "-";
    std::string mfu = e.fits ? fmt::format("{:.1f}%", 100 * e.mfu) : "-";
    std::string host = p.offload == Offload::kNone
                           ? "-"
                           : fmt::format("{:.1f}", ToGiB(e.memory.host_bytes_per_node));
    // ZeRO stage, and with hybrid sharding "/" the shard group: "3/8".
    const std::string zero =
        p.zero_shard > 0 ? fmt::format("{}/{}", p.zero, p.zero_shard) : std::to_string(p.zero);
    out += fmt::format("{:>3} {:>5} {:>3} {:>3} {:>3}{} {:>3} {:>6} {:>4} {:>5} {:>9} {:>2} {:>9} | {:>8} {:>9} {:>5} | "
                       "{:>7.2f} {:>6.2f} {:>6.2f} {:>6.2f} {:>6.2f} {:>6.2f} {:>7.2f} {:>9} {:>4} {}\n",
                       ++rank, p.dp, p.tp, p.cp, p.pp, moe ? fmt::format(" {:>3}", p.ep) : "", p.vpp, zero, p.micro_batch, p.grad_accum,
                       RecomputeName(p.recompute), p.sequence_parallel ? "y" : "n",
                       p.offload == Offload::kNone ? "-" : OffloadName(p.offload), step, tps, mfu,
                       ToGiB(m.weights), ToGiB(m.gradients), ToGiB(m.optimizer), ToGiB(m.activations),
                       ToGiB(m.buffers), ToGiB(m.runtime), ToGiB(m.total()), host, e.fits ? "yes" : "NO",
                       e.runs_rule ? e.runs_rule : "yes");
    if (p.uneven_stages() || p.accounts_edges())
      uneven += fmt::format("{}#{} {}", uneven.empty() ? "" : ", ", rank, StageLayersSummary(p, r.model.layers));
    if (p.placement == Placement::kPpBeforeDp) pp_first += fmt::format("{}#{}", pp_first.empty() ? "" : ", ", rank);
  }
  if (!uneven.empty())
    out += "uneven pipeline stages, layers per stage (first, middle x stages, last): " + uneven + "\n";
  if (!pp_first.empty())
    out += "placement tp-pp-dp (pipeline stages on neighbouring ranks, data parallel a pipeline apart; Megatron "
           "--use-tp-pp-dp-mapping): " + pp_first + "\n";
  out += "All figures are predictions of p3d's simulator. Memory: the peak pipeline stage of one GPU, GiB "
         "(2^30 bytes); step s: seconds per optimizer step; tokens/s: whole cluster; MFU: model FLOPs / "
         "(step x GPUs x peak); CP: context-parallel ranks per sequence; ZeRO: stage, /n its shard group (HSDP); host/node: CPU memory of one node with offload, GiB; runs: the framework runs the plan "
         "today, or the rule it breaks (p3d: what p3d-run runs; --runnable lists only plans it runs). Definitions: "
         "docs/metrics.md.\n";
  return out;
}

}  // namespace p3d
