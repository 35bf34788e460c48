#include "simulator/time_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "common/rank_grid.h"
#include "models/flops.h"
#include "simulator/collectives.h"
#include "simulator/comm_model.h"
#include "simulator/compute_model.h"
#include "simulator/memory_model.h"
#include "simulator/pipeline_sim.h"
#include "simulator/recent_values.h"
#include "simulator/schedule.h"
#include "simulator/stage_kinds.h"

namespace p3d {

namespace {

// Per-shape costs of one micro-batch on one GPU, cached by ComputeShape.
struct ShapeCosts {
  ComputeShape key;
  LayerKernelTimes layer[kLayerKinds];  // by LayerKind::index, for the kinds the model has
  int main = 0;                         // MainKind(model).index()
  EdgeKernelTimes edge;
  // TP collectives, seconds per micro-batch: exposed, plus the slowdown of the
  // GEMMs the framework's TP overlap hides some under (TpLayerHidden).
  double tp_layer_fwd = 0;  // 2 all-reduces (SP: 2 all-gathers + 2 reduce-scatters)
  double tp_layer_bwd = 0;  // 2 more (+ 2 for the recomputed forward with full recompute)
  double tp_emb_fwd = 0, tp_emb_bwd = 0, tp_head_fwd = 0, tp_head_bwd = 0;
  // Expert-parallel all-to-alls of one MoE layer, seconds per micro-batch:
  // dispatch + combine forward, their gradients backward (+ the recomputed
  // forward's with full recompute); 0 with EP = 1.
  double ep_layer_fwd = 0, ep_layer_bwd = 0;
  // Context parallel's K/V ring, exposed seconds per layer per micro-batch
  // (CpRingExposed; 0 at CP = 1).
  double cp_layer_fwd = 0, cp_layer_bwd = 0;
};

// The shape a plan's kernel times depend on.
ComputeShape ShapeOf(const Plan& plan) {
  return {plan.tp, plan.micro_batch, plan.recompute, plan.sequence_shards() > 1,
          plan.attention, plan.cp, plan.ep, plan.expert_tp()};
}

bool SameShape(const ComputeShape& a, const ComputeShape& b) {
  return a.tp == b.tp && a.cp == b.cp && a.micro_batch == b.micro_batch && a.recompute == b.recompute &&
         a.sequence_parallel == b.sequence_parallel && a.attention == b.attention && a.ep == b.ep &&
         a.etp == b.etp;
}

// What TimeModel::StepFloor reads of a plan: its shape, pipeline split and micro-batches.
struct FloorKey {
  ComputeShape shape;
  int pp = 0, vpp = 0, first = 0, last = 0;
  bool embedding = false, loss = false;
  int64_t m = 0;
  FloorKey() = default;
  explicit FloorKey(const Plan& p)
      : shape(ShapeOf(p)), pp(p.pp), vpp(p.vpp), first(p.first_stage_layers), last(p.last_stage_layers),
        embedding(p.account_for_embedding), loss(p.account_for_loss), m(p.grad_accum) {}
  bool operator==(const FloorKey& o) const {
    return SameShape(shape, o.shape) && pp == o.pp && vpp == o.vpp && first == o.first && last == o.last &&
           embedding == o.embedding && loss == o.loss && m == o.m;
  }
};

// Exposed time of a collective of C seconds that runs in `buckets` equal
// buckets as a backward of Tb seconds produces them: bucket i can start once
// the backward has produced it, and the last bucket only after the backward
// ends, so at least C/buckets is exposed.
double BucketExposed(double c, double tb, double buckets) {
  if (c <= 0) return 0;
  return std::max(c / buckets, c - tb * (buckets - 1) / buckets);
}

// Seconds of one layer's TP collectives that run hidden under its GEMMs,
// forward and backward, under a TpOverlap mode (common/framework.h): ar, rs,
// ag are one all-reduce, reduce-scatter and all-gather of B*S*H activations
// over TP, per column-parallel (q/k/v, fc1) and row-parallel (out-proj, fc2)
// GEMM pair. async-grad hides the column GEMM's input-gradient collective
// under its weight-gradient GEMM (SP: also the re-gather of its input under
// its dgrad); userbuffers (SP only, else async-grad) split every collective
// into ring chunks under the GEMM that consumes or produces it: n-1 of n
// all-gather chunks overlap the chunk GEMMs (exposed max(0, c - g(n-1)/n)),
// the pipelined reduce-scatter of 4 chunks leaves at least the last exposed.
struct TpHidden {
  double forward = 0, backward = 0;
};
TpHidden TpLayerHidden(TpOverlap mode, const LayerKernelTimes& k, bool sp, int tp, double ar,
                       double rs, double ag) {
  if (mode == TpOverlap::kUserBuffers && !sp) mode = TpOverlap::kAsyncGrad;  // userbuffers need SP
  TpHidden h;
  if (mode == TpOverlap::kNone) return h;
  auto ring = [&](double c, double g) { return std::min(c, g * (tp - 1) / tp); };
  auto bulk = [](double c, double g) { return std::min(c, g); };
  for (int i = 0; i < 2; ++i) {
    const TpGemmTime& col = k.column[i];
    const TpGemmTime& row = k.row[i];
    if (mode == TpOverlap::kUserBuffers) {
      h.forward += ring(ag, col.fwd) + rs - BucketExposed(rs, row.fwd, 4);
      h.backward += ring(ag, row.dgrad) + bulk(ag, col.dgrad) + bulk(rs, col.wgrad);
    } else if (sp) {
      h.backward += bulk(ag, col.dgrad) + bulk(rs, col.wgrad);
    } else {
      h.backward += bulk(ar, col.wgrad);
    }
  }
  return h;
}

// Bytes per element of the ZeRO-2/3 per-micro-batch gradient reduce-scatter:
// the gradient leaves the backward GEMMs at param_bytes (bf16) unless the
// framework reduces wider (Framework::sharded_grad_reduce_bytes: FSDP2's fp32).
double ShardedGradReduceBytes(const TrainingSpec& training) {
  const int bytes = training.framework.sharded_grad_reduce_bytes;
  return bytes > 0 ? bytes : training.precision.param_bytes;
}

// Prefetched chain of modules (ZeRO-3): module i's parameters are gathered
// (g_i) while module i-1 computes (c_{i-1}):
//   T = g_1 + sum_{i<n} max(c_i, g_{i+1}) + c_n.
// Modules: an optional front edge (f), n identical layers (l), an optional
// back edge (b); recorded as `name` with its formula when `why` is set.
struct Module {
  double c = 0, g = 0;
};
double PrefetchChain(Derivation* why, std::string_view name, const Module* front, int64_t n,
                     const Module& layer, const Module* back) {
  Module seq[3];
  int64_t count[3];
  int k = 0;
  if (front) seq[k] = *front, count[k++] = 1;
  if (n > 0) seq[k] = layer, count[k++] = n;
  if (back) seq[k] = *back, count[k++] = 1;
  if (k == 0) return 0;
  double t = seq[0].g;
  for (int i = 0; i < k; ++i) {
    // Within a run of identical modules: (count-1) overlaps with themselves.
    t += static_cast<double>(count[i] - 1) * std::max(seq[i].c, seq[i].g);
    t += i + 1 < k ? std::max(seq[i].c, seq[i + 1].g) : seq[i].c;
  }
  if (why == nullptr) return t;
  // The same sum as a formula over the modules' names.
  const char* tag[3];
  int j = 0;
  if (front) tag[j++] = "f";
  if (n > 0) tag[j++] = "l";
  if (back) tag[j++] = "b";
  std::string formula = fmt::format("g_{}", tag[0]);
  for (int i = 0; i < k; ++i) {
    if (count[i] > 1) formula += fmt::format(" + (n - 1)*max(c_{0}, g_{0})", tag[i]);
    formula += i + 1 < k ? fmt::format(" + max(c_{}, g_{})", tag[i], tag[i + 1])
                         : fmt::format(" + c_{}", tag[i]);
  }
  const Module none;
  const Module& f = front ? *front : none;
  const Module& b = back ? *back : none;
  return why->Add(name, formula,
                  {{"n", static_cast<double>(n)},
                   {"c_f", f.c},
                   {"g_f", f.g},
                   {"c_l", layer.c},
                   {"g_l", layer.g},
                   {"c_b", b.c},
                   {"g_b", b.g}},
                  t, "ZeRO-3 chain: each module's gather runs under the previous module's compute");
}

// Offload (docs/offload.md): seconds of one host<->GPU copy of `bytes` on one
// GPU's link, and of the CPU AdamW over `params` of each GPU on a node (the
// node's CPU serves all its GPUs at once).
double HostCopySeconds(const NodeSpec& node, double bytes) {
  return bytes > 0 ? bytes / (node.pcie_bytes_per_s * kHostLinkEfficiency) : 0.0;
}
double HostCopy(Derivation* why, std::string_view name, const NodeSpec& node, double bytes) {
  return P3D_TERM(why, name, bytes > 0 ? "bytes/(pcie*eff)" : "0", HostCopySeconds(node, bytes),
                  "one GPU's host link", {"bytes", bytes}, {"pcie", node.pcie_bytes_per_s},
                  {"eff", kHostLinkEfficiency});
}
double CpuAdamSeconds(const ClusterSpec& cluster, double params) {
  return GpusOnNode(cluster) * params / CpuAdamParamsPerS(cluster.node);
}
// A CPU step of `cpu` seconds whose output uploads in `chunks` pieces, each
// as soon as it is produced (two-stage pipeline): what the upload adds after
// the CPU step ends.
double UploadAfterCpu(double cpu, double upload, double chunks) {
  return std::max(0.0, upload - cpu) + std::min(cpu, upload) / chunks;
}

// SendRecvSeconds, recorded as `name` when `why` is set.
double SendRecv(Derivation* why, std::string_view name, const Network& network, double bytes,
                int rank, int stride) {
  const double t = SendRecvSeconds(network, bytes, rank, stride);
  if (why == nullptr) return t;
  const int tier = TierBetween(network, rank, stride);
  const LinkSpec& link = network[tier].link;
  return P3D_TERM(why, name, bytes > 0 ? "bytes/(bw*eff) + latency" : "0", t,
                  fmt::format("activation to the next stage, over network tier {} ({})", tier, link.name),
                  {"bytes", bytes}, {"bw", link.bytes_per_s}, {"eff", link.efficiency},
                  {"latency", link.latency_s});
}

// Seconds of one collective over `path`, recorded as `name` when `why` is set
// (the formula of CollectiveSeconds: collectives.h's bus factor and ring steps).
double CollectiveTime(Derivation* why, std::string_view name, Collective kind, double bytes,
                      const GroupPath& path) {
  const double t = CollectiveSeconds(kind, bytes, path);
  if (why == nullptr || t == 0) return t;
  why->Add(name, "bus*bytes/bw + steps*latency",
           {{"bus", BusFactor(kind, path.size)},
            {"bytes", bytes},
            {"bw", path.bus_bytes_per_s},
            {"steps", RingSteps(kind, path.size)},
            {"latency", path.latency_s}},
           t,
           fmt::format("{} over {} ranks{}", CollectiveName(kind), path.size,
                       path.tier > 0 ? fmt::format(", across network tiers 0-{}", path.tier) : ""));
  return t;
}

// BucketExposed, recorded as `name` when `why` is set.
double Exposed(Derivation* why, std::string_view name, double c, double tb, double buckets) {
  return P3D_TERM(why, name, c > 0 ? "max(c/k, c - tb*(k - 1)/k)" : "0",
                  BucketExposed(c, tb, buckets),
                  "a collective of c s in k buckets as a backward of tb s produces them", {"c", c},
                  {"tb", tb}, {"k", buckets});
}

}  // namespace

struct TimeModel::Impl {
  ModelSpec model;
  TrainingSpec training;
  ClusterSpec cluster;
  double model_flops = 0;
  std::vector<ShapeCosts> shapes;
  // Where each key's costs lie in `shapes`.
  struct ShapeHash {
    size_t operator()(const ComputeShape& k) const {
      size_t h = static_cast<size_t>(k.micro_batch);
      for (int64_t v : {int64_t{k.tp}, int64_t{k.cp}, int64_t{k.ep}, int64_t{k.etp}, int64_t(k.recompute),
                        int64_t{k.sequence_parallel}, int64_t(k.attention)})
        h = h * 1000003 ^ static_cast<size_t>(v);
      return h;
    }
  };
  struct ShapeEqual {
    bool operator()(const ComputeShape& a, const ComputeShape& b) const { return SameShape(a, b); }
  };
  std::unordered_map<ComputeShape, size_t, ShapeHash, ShapeEqual> shape_index;
  RecentValues<FloorKey, double> floors;  // StepFloor's
  double StepFloor(const Plan& plan);
  struct ScheduleEntry {
    int pp, vpp;
    int64_t m;
    PipeSchedule schedule;
  };
  std::vector<ScheduleEntry> schedules;
  PipelineSimulator sim;
  PipelineCosts costs;
  PipelineResult result;
  // Per pipeline rank, seconds per step.
  std::vector<double> tp_rank, cp_rank, ep_rank, dp_in_rank, dp_tail_rank, opt_rank;
  // DP collective seconds that ran under compute (issued minus exposed), and
  // the compute they slowed (GpuSpec::overlap_slowdown_*), per rank; the
  // slowdown is part of dp_tail_rank.
  std::vector<double> dp_hidden_rank, dp_slowdown_rank;
  // Offload, per pipeline rank, seconds per step: exposed transfers inside the
  // micro-batches (gradient copies, parameter uploads) and after the last
  // backward (ZeRO-1 gradient copy, upload of the updated parameters).
  std::vector<double> off_in_rank, off_tail_rank;

  // What Run leaves for Evaluate / Explain.
  struct Details {
    TimeBreakdown time;
    int critical = 0;
    int last = 0;  // rank that ends the step
    double makespan = 0;
  } out;

  // Explain: where Prepare and Run record their terms (null in the search),
  // and the ranks whose chunk terms and end-of-step terms are recorded.
  Derivation* why = nullptr;
  int why_chunk_rank = -1, why_tail_rank = -1;

  Impl(const ModelSpec& m, const TrainingSpec& t, const ClusterSpec& c)
      : model(m), training(t), cluster(c) {
    model_flops = ModelFlopsPerStep(model, training.global_batch, training.seq);
  }

  const ShapeCosts& Shape(const Plan& plan);
  ShapeCosts CostsOfShape(const Plan& plan, Derivation* why) const;
  const PipeSchedule* Schedule(const Plan& plan, Status* status);
  // The chunk's exposed EP all-to-alls `ef`, `eb` under TrainingSpec::ep_a2a_overlap.
  void EpOverlap(const Plan& plan, int r, double fk, double bk, double* ef, double* eb, Derivation* w);
  void CpRingExposed(const Plan& plan, ShapeCosts* s, Derivation* why) const;
  // Fills costs (per-chunk durations, p2p) and the per-rank TP, in-stage DP,
  // end-of-step DP and optimizer seconds: everything but the simulation.
  Status Prepare(const Plan& plan);
  Status Run(const Plan& plan, bool with_timeline);
  // Virtual stage v = chunk * PP + rank (common/plan.h ChunkLayers).
  int64_t ChunkLayers(const Plan& plan, int v) const { return p3d::ChunkLayers(plan, model.layers, v); }
  Status Check(const Plan& plan) const;

 private:
  struct ModuleComm {
    double fetch = 0, scatter = 0;  // gather (+ upload), gradient reduce-scatter
  };
  // ZeRO-3 per-module communication, the same for every chunk.
  struct Zero3Comm {
    ModuleComm emb, head, layer, emb_up, head_up, layer_up;
  };
  // What every chunk of one plan shares, computed once per plan.
  struct PlanCommon {
    // The ZeRO shard group (Plan::zero_shards: DP x CP, or the HSDP shard
    // group), over which every gradient reduction and parameter gather runs,
    // and with hybrid sharding the replica group across which each shard's
    // gradient is all-reduced (common/rank_grid.h PlanGroupSpan).
    GroupPath dp_path, replica_path;
    // With EP > 1 the expert-data-parallel group (DP x CP x TP / (EP x ETP)
    // ranks, stride ETP x EP), over which the routed experts' gradients are
    // reduced and, under ZeRO-3, their parameters gathered; else dp_path.
    GroupPath edp_path;
    double layer_params = 0;  // one layer on one TP rank (the model's mean where kinds mix)
    double layer_experts = 0;  // of layer_params: the routed experts when EP > 1 (else 0)
    bool mixed = false;       // the model has layers of more than one kind
    StageParams first, last;  // of the first and the last pipeline stage
    Zero3Comm z3;
  };
  // `layer_params`: one layer's module (a chunk's mean layer where kinds mix),
  // `layer_experts` of them its routed experts when EP > 1 (else 0).
  Zero3Comm Zero3Modules(const Plan& plan, const PlanCommon& pc, double layer_params,
                         double layer_experts) const;
  // The routed experts of `kinds` layers on one rank when EP > 1 (their own
  // ZeRO shard group, the expert-data-parallel one), else 0.
  double LayerExperts(const Plan& plan, const LayerKindCounts& kinds) const {
    return plan.ep > 1 ? StageExpertParams(model, kinds, plan.expert_tp(), plan.ep) : 0.0;
  }
  void Chunk(const Plan& plan, const ShapeCosts& sc, const PlanCommon& pc, int r, int c);
  void StageTail(const Plan& plan, const ShapeCosts& sc, const PlanCommon& pc, int r);
  double Fp8WeightCast(const Plan& plan, int r, Derivation* w) const;
  void Link(const Plan& plan, int v);
  bool SameWork(const Plan& plan, int a, int b) const;
  void CopyRank(const Plan& plan, int from, int to);
  // Every per-rank vector Prepare fills.
  std::array<std::vector<double>*, 10> PerRank() {
    return {&tp_rank, &cp_rank, &ep_rank, &dp_in_rank, &dp_tail_rank, &dp_hidden_rank,
            &dp_slowdown_rank, &opt_rank, &off_in_rank, &off_tail_rank};
  }
  void Breakdown(int crit, int last_rank);
};

const ShapeCosts& TimeModel::Impl::Shape(const Plan& plan) {
  const ComputeShape key = ShapeOf(plan);
  const auto [at, added] = shape_index.try_emplace(key, shapes.size());
  if (added) shapes.push_back(CostsOfShape(plan, nullptr));
  return shapes[at->second];
}

ShapeCosts TimeModel::Impl::CostsOfShape(const Plan& plan, Derivation* why) const {
  const ComputeShape key = ShapeOf(plan);
  ShapeCosts s;
  s.key = key;
  const LayerKindCounts kinds = model.CountKinds(0, model.layers);
  s.main = MainKind(model).index();
  for (int k = 0; k < kLayerKinds; ++k)
    if (kinds.count[k] > 0) s.layer[k] = LayerKernels(model, LayerKind::FromIndex(k), training, cluster.gpu, key,
                                               k == s.main ? why : nullptr);
  s.edge = EdgeKernels(model, training, cluster.gpu, key);
  const char* kernels = "GEMMs at peak*eff(2MNK) (or HBM-bound) + memory-bound ops at HBM*eff";
  auto kernel = [&](const std::string& name, const KernelTime& k) {
    P3D_TERM(why, name, "gemm + memory", k.total(), kernels, {"gemm", k.gemm_s},
             {"memory", k.memory_s});
  };
  // The main kind as "layer.*"; a model's other kinds as "layer.<kind>.*".
  for (int k = 0; k < kLayerKinds; ++k) {
    if (kinds.count[k] == 0) continue;
    const std::string prefix =
        k == s.main ? "layer" : std::string("layer.") + KindName(LayerKind::FromIndex(k));
    kernel(prefix + ".forward", s.layer[k].forward);
    kernel(prefix + ".backward", s.layer[k].backward);
    kernel(prefix + ".recompute", s.layer[k].recompute);
  }
  const GroupPath tp = GroupPathFor(cluster.network, plan.tp, 1);
  // B*S*H activations of one micro-batch.
  const double x =
      MicroBatchTokens(plan, training) * model.hidden * training.precision.activation_bytes;
  const bool sp = key.sequence_parallel;
  const double ar = sp ? 0 : CollectiveTime(why, "tp.all_reduce", Collective::kAllReduce, x, tp);
  const double rs =
      sp ? CollectiveTime(why, "tp.reduce_scatter", Collective::kReduceScatter, x, tp) : 0;
  const double ag = sp ? CollectiveTime(why, "tp.all_gather", Collective::kAllGather, x, tp) : 0;
  const double full = plan.recompute == Recompute::kFull ? 1 : 0;
  // Forward: 2 all-reduces (SP: 2 reduce-scatters + 2 all-gathers, same bytes).
  // Backward: their conjugates; with SP also the all-gathers of the
  // sequence-sharded inputs of the column-parallel GEMMs (q/k/v and fc), which
  // Megatron repeats in backward to form the weight gradients (stored
  // sharded); full recompute repeats the forward's 2. Framework::tp_overlap
  // hides parts under the GEMMs (TpLayerHidden); a hidden second still slows
  // the GEMM by `sl` (GpuSpec::overlap_slowdown_gemm: the SMs and HBM the
  // collective takes).
  const TpHidden hidden =
      TpLayerHidden(training.framework.tp_overlap, s.layer[s.main], sp, plan.tp, ar, rs, ag);
  if (hidden.forward > 0 || hidden.backward > 0) {
    const double hf = hidden.forward, hb = hidden.backward;
    const double sl = cluster.gpu.overlap_slowdown_gemm;
    s.tp_layer_fwd =
        sp ? P3D_TERM(why, "layer.tp_comm.forward", "2*(rs + ag) - hf*(1 - sl)",
                      2 * (rs + ag) - hf * (1 - sl), "hf: hidden under the GEMMs", {"rs", rs},
                      {"ag", ag}, {"hf", hf}, {"sl", sl})
           : P3D_TERM(why, "layer.tp_comm.forward", "2*ar - hf*(1 - sl)", 2 * ar - hf * (1 - sl),
                      "hf: hidden under the GEMMs", {"ar", ar}, {"hf", hf}, {"sl", sl});
    s.tp_layer_bwd =
        sp ? P3D_TERM(
                 why, "layer.tp_comm.backward",
                 "2*(rs + ag) + 2*ag - hb*(1 - sl) + full*(2*(rs + ag) - hf*(1 - sl))",
                 2 * (rs + ag) + 2 * ag - hb * (1 - sl) + full * (2 * (rs + ag) - hf * (1 - sl)),
                 "hb: hidden under the GEMMs", {"rs", rs}, {"ag", ag}, {"hb", hb}, {"hf", hf},
                 {"sl", sl}, {"full", full})
           : P3D_TERM(why, "layer.tp_comm.backward",
                      "2*ar - hb*(1 - sl) + full*(2*ar - hf*(1 - sl))",
                      2 * ar - hb * (1 - sl) + full * (2 * ar - hf * (1 - sl)),
                      "hb: hidden under the GEMMs", {"ar", ar}, {"hb", hb}, {"hf", hf}, {"sl", sl},
                      {"full", full});
  } else {
    s.tp_layer_fwd = sp ? P3D_TERM(why, "layer.tp_comm.forward", "2*(rs + ag)", 2 * (rs + ag), "",
                                   {"ar", ar}, {"rs", rs}, {"ag", ag}, {"full", full})
                        : P3D_TERM(why, "layer.tp_comm.forward", "2*ar", 2 * ar, "", {"ar", ar},
                                   {"rs", rs}, {"ag", ag}, {"full", full});
    s.tp_layer_bwd =
        sp ? P3D_TERM(why, "layer.tp_comm.backward", "2*(rs + ag) + 2*ag + full*2*(rs + ag)",
                      2 * (rs + ag) + 2 * ag + full * 2 * (rs + ag), "", {"ar", ar}, {"rs", rs},
                      {"ag", ag}, {"full", full})
           : P3D_TERM(why, "layer.tp_comm.backward", "2*ar + full*2*ar", 2 * ar + full * 2 * ar, "",
                      {"ar", ar}, {"rs", rs}, {"ag", ag}, {"full", full});
  }
  if (model.moe()) {
    // The named assumption of every MoE term: balanced routing, no capacity
    // factor (no dropped or padded tokens); each local expert's grouped GEMM
    // sees its mean share of the EP group's routed tokens.
    const double T = MicroBatchTokens(plan, training), k = static_cast<double>(model.experts_per_token);
    const double E = static_cast<double>(model.experts), EP = plan.ep, ETP = plan.expert_tp(), TP = plan.tp;
    P3D_TERM(why, "moe.balanced_routing", "T*k*EP*ETP/(TP*E)", T * k * EP * ETP / (TP * E),
             "ASSUMPTION: balanced routing, capacity factor none: tokens per local expert per micro-batch",
             {"T", T}, {"k", k}, {"EP", EP}, {"ETP", ETP}, {"TP", TP}, {"E", E});
  }
  if (plan.ep > 1) {
    // MoE dispatch and combine (Megatron-Core's MoEAlltoAllTokenDispatcher;
    // DeepEP below):
    // each rank sends its T/SPd tokens' k routed copies of H activations,
    // (EP-1)/EP of them to other EP ranks, and receives as many back
    // (balanced routing, "moe.balanced_routing"): 1/EP of them to each
    // member directly (AllToAllSeconds: the members in the rank's own domain
    // over its links, the others over the crossed tier's per-GPU share, at
    // once), on the EP group's span (EP ranks at stride ETP, carved from the
    // stage's TP x CP x DP ranks by Megatron-Core's expert "tp-ep-dp-pp"
    // order: consecutive DP x CP ranks when ETP = TP).
    const GroupPath ep_path = GroupPathFor(cluster.network, plan.ep, plan.expert_tp());
    const double T_r = MicroBatchTokens(plan, training) / plan.sequence_shards();
    const double k = static_cast<double>(model.experts_per_token);
    const double tb = T_r * model.hidden * training.precision.activation_bytes;  // one copy of each token
    const double bytes = tb * k;
    const double m = ep_path.inner_members, n = ep_path.size, E = static_cast<double>(model.experts);
    const ExpertRouting routing{E, k, static_cast<double>(model.expert_groups),
                                static_cast<double>(model.groups_per_token)};
    // DeepEP (TrainingSpec::ep_deepep): one copy of each token per node
    // holding one of its experts across, fanned out inside the node.
    const double a2a =
        training.ep_deepep
            ? P3D_TERM(why, "ep.deepep", "max(r*(m - 1)/m*tb/bw_in, d*(n/m - 1)/(n/m)*tb/bw) + (n - 1)*latency",
                       DeepEpAllToAllSeconds(tb, routing, ep_path),
                       "DeepEP dispatch over the EP group's n/m nodes of m, tb = one copy of the rank's tokens: "
                       "a token crosses once to each of the d nodes its k experts are on (expected, balanced "
                       "routing) and reaches the r ranks there over NVLink",
                       {"m", m}, {"n", n}, {"tb", tb}, {"k", k}, {"E", E},
                       {"d", ExpectedSlicesHit(routing, n / m)}, {"r", ExpectedSlicesHit(routing, n)},
                       {"bw_in", ep_path.inner_bytes_per_s}, {"bw", ep_path.bus_bytes_per_s},
                       {"latency", ep_path.latency_s})
            : P3D_TERM(why, "ep.all_to_all", "max((m - 1)/n*bytes/bw_in, (n - m)/n*bytes/bw) + (n - 1)*latency",
                       AllToAllSeconds(bytes, ep_path),
                       "all-to-all over the EP group: m of its n members share a domain below the "
                       "outermost tier it crosses",
                       {"m", m}, {"n", n}, {"bytes", bytes}, {"bw_in", ep_path.inner_bytes_per_s},
                       {"bw", ep_path.bus_bytes_per_s}, {"latency", ep_path.latency_s});
    s.ep_layer_fwd = P3D_TERM(why, "layer.ep_comm.forward", "2*a2a", 2 * a2a,
                              "dispatch + combine of one MoE layer", {"a2a", a2a}, {"full", full});
    s.ep_layer_bwd = P3D_TERM(why, "layer.ep_comm.backward", "2*a2a + full*2*a2a", 2 * a2a + full * 2 * a2a,
                              "their gradients (+ the recomputed forward's)", {"a2a", a2a}, {"full", full});
  }
  if (plan.cp > 1) CpRingExposed(plan, &s, why);
  // Vocab-parallel embedding: partial rows reduced over TP (SP: reduce-scatter;
  // its backward all-gathers the gradient). Head: SP all-gathers the final
  // norm's output (backward: reduce-scatter); without SP the column-parallel
  // logits GEMM all-reduces dX in backward. Vocab-parallel cross-entropy:
  // three all-reduces of B*S fp32 values (max, sum, target logit).
  const double ce = CollectiveTime(why, "tp.cross_entropy_all_reduce", Collective::kAllReduce,
                                   MicroBatchTokens(plan, training) * 4, tp);
  s.tp_emb_fwd = sp ? P3D_TERM(why, "embedding.tp_comm.forward", "rs", rs, "", {"ar", ar},
                               {"rs", rs}, {"ag", ag}, {"ce", ce})
                    : P3D_TERM(why, "embedding.tp_comm.forward", "ar", ar, "", {"ar", ar},
                               {"rs", rs}, {"ag", ag}, {"ce", ce});
  s.tp_emb_bwd = P3D_TERM(why, "embedding.tp_comm.backward", sp ? "ag" : "0", sp ? ag : 0, "",
                          {"ar", ar}, {"rs", rs}, {"ag", ag}, {"ce", ce});
  s.tp_head_fwd = sp ? P3D_TERM(why, "head.tp_comm.forward", "ag + 3*ce", ag + 3 * ce, "",
                                {"ar", ar}, {"rs", rs}, {"ag", ag}, {"ce", ce})
                     : P3D_TERM(why, "head.tp_comm.forward", "3*ce", 3 * ce, "", {"ar", ar},
                                {"rs", rs}, {"ag", ag}, {"ce", ce});
  s.tp_head_bwd = sp ? P3D_TERM(why, "head.tp_comm.backward", "rs", rs, "", {"ar", ar}, {"rs", rs},
                                {"ag", ag}, {"ce", ce})
                     : P3D_TERM(why, "head.tp_comm.backward", "ar", ar, "", {"ar", ar}, {"rs", rs},
                                {"ag", ag}, {"ce", ce});
  return s;
}

// Context parallel (Megatron-Core --cp-comm-type p2p, Transformer Engine's
// AttnFuncWithCPAndKVP2P): each of a layer's CP attention steps runs on the
// K/V chunk the ring delivered while the next chunk is sent on (send to CP
// rank i+1, receive from i-1; ranks TP apart), so a step exposes what its
// transfer exceeds its compute, one CP-th of the core (compute_model.cc).
// Forward: CP-1 transfers of this rank's K and V, kv = send of 2*T*KVD_r*e
// bytes. Backward: the K/V travel again with the dK/dV accumulated so far
// ([2, K/V] buffers): the first step sends K/V only, the CP-2 middle steps
// both, the last dK/dV alone. A recomputed core (full recompute, Megatron's
// core_attn selective recompute) runs the forward ring again in backward.
// The ring's slowest hop decides every step: over the outermost network tier
// the ring crosses (across nodes when TP*CP GPUs span more than one node).
void TimeModel::Impl::CpRingExposed(const Plan& plan, ShapeCosts* s, Derivation* why) const {
  const Network& network = cluster.network;
  const double e = training.precision.activation_bytes;
  const double kv_bytes = MicroBatchTokens(plan, training) * 2 *
                          static_cast<double>(model.KvHeadsPerTpRank(plan.tp) * model.head_dim()) * e;
  const GroupSpan ring = PlanGroupSpan(PlanGroup::kContext, plan);
  const int from = SlowestHopRank(network, GroupPathFor(network, ring.size, ring.stride), ring.stride);
  const double kv = SendRecv(why, "cp.kv_send", network, kv_bytes, from, ring.stride);
  const double CP = plan.cp;
  // The core of the model's most common layer kind (MainKind) sets the pace.
  const LayerKernelTimes& main = s->layer[s->main];
  const double cf = main.core_forward_s / CP, cb = main.core_backward_s / CP;
  const Recompute rc_mode = plan.recompute;
  const double rc = rc_mode == Recompute::kFull ||
                            (rc_mode == Recompute::kSelective &&
                             training.framework.selective == SelectiveRecompute::kCoreAttention)
                        ? 1.0
                        : 0.0;
  const double fwd = std::max(0.0, kv - cf) * (CP - 1);
  s->cp_layer_fwd = P3D_TERM(why, "layer.cp_comm.forward", "(CP - 1)*max(0, kv - cf)", fwd,
                             "K/V ring: what each transfer exceeds its step's attention (cf = core/CP)",
                             {"CP", CP}, {"kv", kv}, {"cf", cf});
  s->cp_layer_bwd = P3D_TERM(
      why, "layer.cp_comm.backward",
      "2*max(0, kv - cb) + (CP - 2)*max(0, 2*kv - cb) + rc*(CP - 1)*max(0, kv - cf)",
      2 * std::max(0.0, kv - cb) + (CP - 2) * std::max(0.0, 2 * kv - cb) + rc * fwd,
      "K/V and dK/dV ring under the backward's attention steps (cb = core backward/CP), and the "
      "recomputed forward's ring",
      {"CP", CP}, {"kv", kv}, {"cb", cb}, {"cf", cf}, {"rc", rc});
}

const PipeSchedule* TimeModel::Impl::Schedule(const Plan& plan, Status* status) {
  for (const ScheduleEntry& e : schedules)
    if (e.pp == plan.pp && e.vpp == plan.vpp && e.m == plan.grad_accum) return &e.schedule;
  auto s = BuildSchedule(ScheduleOf(plan), plan.pp, plan.vpp, plan.grad_accum);
  if (!s.ok()) {
    *status = s.status();
    return nullptr;
  }
  schedules.push_back({plan.pp, plan.vpp, plan.grad_accum, std::move(s).value()});
  return &schedules.back().schedule;
}
Status TimeModel::Impl::Check(const Plan& p) const {
  if (p.dp < 1 || p.tp < 1 || p.cp < 1 || p.pp < 1 || p.vpp < 1)
    return Status::InvalidArgument(fmt::format(
        "plan: dp, tp, cp, pp and vpp must be >= 1, got dp={} tp={} cp={} pp={} vpp={}", p.dp,
        p.tp, p.cp, p.pp, p.vpp));
  if (p.zero_shard != 0 && (p.zero_shard < 1 || p.grad_group() % p.zero_shard != 0))
    return Status::InvalidArgument(fmt::format(
        "rule zero_shard|dp*cp: zero_shard {} does not divide DP x CP = {}", p.zero_shard,
        p.grad_group()));
  if (p.micro_batch < 1 || p.grad_accum < 1)
    return Status::InvalidArgument(
        fmt::format("plan: micro_batch and grad_accum must be >= 1, got {} and {}", p.micro_batch,
                    p.grad_accum));
  if (p.zero < 0 || p.zero > 3)
    return Status::InvalidArgument(fmt::format("plan: zero must be 0..3, got {}", p.zero));
  if (p.global_batch() != training.global_batch)
    return Status::InvalidArgument(fmt::format(
        "rule batch=mb*ga*dp: micro_batch {} x grad_accum {} x dp {} = {} != global_batch {}",
        p.micro_batch, p.grad_accum, p.dp, p.global_batch(), training.global_batch));
  if (cluster.num_gpus > 0 && p.gpus() != cluster.num_gpus)
    return Status::InvalidArgument(fmt::format("rule gpus=dp*tp*cp*pp: {} x {} x {} x {} != {} GPUs",
                                               p.dp, p.tp, p.cp, p.pp, cluster.num_gpus));
  std::string split;
  if (const char* rule = PipelineSplitRule(p, model.layers, &split))
    return Status::InvalidArgument(fmt::format("rule {}: {}", rule, split));
  if (training.seq < 1)
    return Status::InvalidArgument(fmt::format("training: seq must be >= 1, got {}", training.seq));
  const GpuSpec& g = cluster.gpu;
  if (!(g.peak_flops > 0) || !(g.hbm_bytes_per_s > 0) || !(g.hbm_efficiency > 0))
    return Status::InvalidArgument(fmt::format(
        "hardware '{}': peak_flops, hbm_bytes_per_s and hbm_efficiency must be positive", g.name));
  const NodeSpec& n = cluster.node;
  if (n.gpus_per_node < 1)
    return Status::InvalidArgument(fmt::format("hardware '{}': gpus_per_node must be positive", g.name));
  if (Status s = ValidateNetwork(cluster.network, "field "); !s.ok())
    return Status::InvalidArgument(fmt::format("hardware '{}': {}", g.name, s.message()));
  if (p.offload != Offload::kNone && !(n.pcie_bytes_per_s > 0))
    return Status::InvalidArgument(
        fmt::format("hardware '{}': pcie_bytes_per_s must be positive for offload plans", g.name));
  return Status::Ok();
}

TimeModel::Impl::Zero3Comm TimeModel::Impl::Zero3Modules(const Plan& plan, const PlanCommon& pc,
                                                         double layer_params, double layer_experts) const {
  Zero3Comm z3;
  if (plan.zero < 3 || !(plan.zero_shards() > 1 || plan.offload == Offload::kOptimizerAndParams))
    return z3;
  const double pb = training.precision.param_bytes;
  const GroupPath& dp_path = pc.dp_path;
  const StageParams& first = pc.first;
  const StageParams& last = pc.last;
  // A module's bf16 parameters are all-gathered before its forward and (when
  // the framework reshards after forward, Chunk) again before its backward;
  // its gradient is reduce-scattered after its backward (per micro-batch: no
  // full-size accumulation buffer exists under ZeRO-3) at the framework's
  // reduce width (ShardedGradReduceBytes). Parameter offload first uploads the
  // module's shard (1/DP) from the host. With EP > 1 a layer's routed experts
  // (the E/EP this rank computes) are sharded over the expert-data-parallel
  // group instead and gathered and reduce-scattered there, after the dense
  // part over DP (torchtitan parallelize.py and NeMo AutoModel
  // moe/parallelizer.py: fully_shard of the experts over the dp-mod-ep mesh;
  // Megatron-FSDP's expert data-parallel group); with EP = DP x CP x TP /
  // ETP that group is one rank and the experts are never gathered.
  const double rb = ShardedGradReduceBytes(training);
  const double edp = static_cast<double>(plan.expert_dp());
  auto module = [&](double params, double experts, bool uploads) {
    const double dense = params - experts;
    const double upload =
        uploads ? HostCopySeconds(cluster.node, (dense / plan.zero_shards() + experts / edp) * pb) : 0.0;
    return ModuleComm{CollectiveSeconds(Collective::kAllGather, dense * pb, dp_path) +
                          CollectiveSeconds(Collective::kAllGather, experts * pb, pc.edp_path) + upload,
                      CollectiveSeconds(Collective::kReduceScatter, dense * rb, dp_path) +
                          CollectiveSeconds(Collective::kReduceScatter, experts * rb, pc.edp_path)};
  };
  const double head_params = last.head + last.final_norm;
  z3.emb = module(first.embedding, 0, false), z3.emb_up = module(first.embedding, 0, true);
  z3.head = module(head_params, 0, false), z3.head_up = module(head_params, 0, true);
  z3.layer = module(layer_params, layer_experts, false), z3.layer_up = module(layer_params, layer_experts, true);
  return z3;
}

// EP all-to-all overlap (TrainingSpec::ep_a2a_overlap; Megatron-Core
// --overlap-moe-expert-parallel-comm: pipeline_parallel/combined_1f1b.py and
// the fine-grained layer schedule, which split each layer into attention,
// dispatch, experts and combine nodes and run one micro-batch's forward with
// another's backward, the all-to-alls on a communication stream). In the 1F1B
// steady state every forward is paired with a backward: the forward's
// dispatch + combine `ef` hide under the paired backward's compute `bk` and the
// backward's `eb` under the forward's `fk`; what exceeds it stays exposed. The
// warm-up forwards, and as many cool-down backwards, run unpaired with their
// all-to-alls exposed: the forwards rank r runs before its first backward
// (WarmupForwards: the schedule's warm-up and its first steady forward, which
// is the one more warm-up micro-batch Megatron runs with the overlap on, so
// that the first pair has a backward to meet; with PP = 1 only the first
// forward and the last backward are unpaired). A chunk's pass takes the mean
// over its m*VPP passes of the step (the pipeline simulator times one
// duration per chunk), its partner's compute taken as its own chunk's.
void TimeModel::Impl::EpOverlap(const Plan& plan, int r, double fk, double bk, double* ef, double* eb,
                                Derivation* w) {
  Status status;
  const PipeSchedule* schedule = Schedule(plan, &status);
  const double passes = static_cast<double>(plan.grad_accum) * plan.vpp;
  const double warm = schedule ? static_cast<double>(WarmupForwards(*schedule, r)) : passes;
  const double u = P3D_TERM(w, "chunk.ep_overlap.unpaired", "min(1, warm/(m*VPP))",
                            std::min(1.0, warm / passes),
                            "share of the rank's forwards (and backwards) that run unpaired, all-to-alls exposed",
                            {"warm", warm}, {"m", static_cast<double>(plan.grad_accum)},
                            {"VPP", static_cast<double>(plan.vpp)});
  const double f = *ef, b = *eb;
  *ef = P3D_TERM(w, "chunk.ep_overlap.forward", "u*ef + (1 - u)*max(0, ef - bk)",
                 u * f + (1 - u) * std::max(0.0, f - bk),
                 "exposed forward all-to-alls: unpaired, or beyond the paired backward's compute", {"u", u},
                 {"ef", f}, {"bk", bk});
  *eb = P3D_TERM(w, "chunk.ep_overlap.backward", "u*eb + (1 - u)*max(0, eb - fk)",
                 u * b + (1 - u) * std::max(0.0, b - fk),
                 "exposed backward all-to-alls: unpaired, or beyond the paired forward's compute", {"u", u},
                 {"eb", b}, {"fk", fk});
}

// Chunk c of pipeline rank r (virtual stage v = c*PP + r), one micro-batch:
// its forward and backward seconds (kernels, TP collectives, and under ZeRO-3
// the prefetched parameter gathers), the DP/offload traffic exposed inside
// the backward, and the activation send to the next virtual stage.
void TimeModel::Impl::Chunk(const Plan& plan, const ShapeCosts& sc, const PlanCommon& pc, int r,
                            int c) {
  const GroupPath& dp_path = pc.dp_path;
  Derivation* w = r == why_chunk_rank ? why : nullptr;
  const int pp = plan.pp, stages = pp * plan.vpp;
  const int v = c * pp + r, i = r * plan.vpp + c;
  const double m = static_cast<double>(plan.grad_accum);
  const Precision& prec = training.precision;
  const NodeSpec& node = cluster.node;
  const bool is_first = v == 0, is_last = v == stages - 1;
  const bool params_offload = plan.offload == Offload::kOptimizerAndParams;
  const int64_t layers = ChunkLayers(plan, v);
  const double n = static_cast<double>(layers);
  // One layer's kernels: the chunk's mean over its layer kinds (exact counts,
  // stage_kinds.h); a model of one kind has just that kind's.
  double layer_fwd = sc.layer[sc.main].forward.total();
  double layer_bwd = sc.layer[sc.main].backward.total() + sc.layer[sc.main].recompute.total();
  double chunk_layer_params = n * pc.layer_params;
  Zero3Comm chunk_z3;
  if (pc.mixed && layers > 0) {
    const LayerKindCounts kinds = ChunkKinds(model, plan, v);
    double fwd[kLayerKinds], bwd[kLayerKinds], fwd_sum = 0, bwd_sum = 0;
    for (int k = 0; k < kLayerKinds; ++k) {
      const double nk = static_cast<double>(kinds.count[k]);
      fwd[k] = sc.layer[k].forward.total();
      bwd[k] = sc.layer[k].backward.total() + sc.layer[k].recompute.total();
      fwd_sum += nk * fwd[k];
      bwd_sum += nk * bwd[k];
    }
    auto mean = [&](const char* name, double sum, const double* t) {
      return P3D_TERM(w, name, "(n0*t0 + n1*t1 + n2*t2 + n3*t3)/n", sum / n,
                      "mean over the chunk's layer kinds (dense, dense windowed, moe, moe windowed)",
                      {"n0", static_cast<double>(kinds.count[0])}, {"t0", t[0]},
                      {"n1", static_cast<double>(kinds.count[1])}, {"t1", t[1]},
                      {"n2", static_cast<double>(kinds.count[2])}, {"t2", t[2]},
                      {"n3", static_cast<double>(kinds.count[3])}, {"t3", t[3]}, {"n", n});
    };
    layer_fwd = mean("chunk.layer_forward", fwd_sum, fwd);
    layer_bwd = mean("chunk.layer_backward", bwd_sum, bwd);
    chunk_layer_params = StageLayerParams(model, kinds, plan.tp, plan.ep, plan.expert_tp());
    if (plan.zero >= 3) chunk_z3 = Zero3Modules(plan, pc, chunk_layer_params / n, LayerExperts(plan, kinds) / n);
  }
  const Zero3Comm& z3 = pc.mixed && layers > 0 && plan.zero >= 3 ? chunk_z3 : pc.z3;
  // The embedding (first virtual stage) and LM head + loss (last) are edges.
  const EdgeKernelTimes& ek = sc.edge;
  const double edge_fwd =
      (is_first ? ek.embedding_forward.total() : 0) + (is_last ? ek.head_forward.total() : 0);
  const double edge_bwd =
      (is_first ? ek.embedding_backward.total() : 0) + (is_last ? ek.head_backward.total() : 0);
  const double edge_tp_fwd = (is_first ? sc.tp_emb_fwd : 0) + (is_last ? sc.tp_head_fwd : 0);
  const double edge_tp_bwd = (is_first ? sc.tp_emb_bwd : 0) + (is_last ? sc.tp_head_bwd : 0);
  const double ft = n * sc.tp_layer_fwd + edge_tp_fwd, bt = n * sc.tp_layer_bwd + edge_tp_bwd;
  // The chunk's MoE layers' expert-parallel all-to-alls (EP > 1).
  const double n_moe =
      plan.ep > 1 && layers > 0 ? static_cast<double>(ChunkKinds(model, plan, v).count[LayerKind{true, false}.index()] +
                                                      ChunkKinds(model, plan, v).count[LayerKind{true, true}.index()])
                                : 0.0;
  const double fc = n * sc.cp_layer_fwd, bc = n * sc.cp_layer_bwd;  // CP ring, exposed
  const double fk = n * layer_fwd + edge_fwd, bk = n * layer_bwd + edge_bwd;
  double ef = n_moe * sc.ep_layer_fwd, eb = n_moe * sc.ep_layer_bwd;
  if (n_moe > 0 && EpOverlapRuns(training, plan)) EpOverlap(plan, r, fk + ft + fc, bk + bt + bc, &ef, &eb, w);
  const double chunk_params = chunk_layer_params + (is_first ? pc.first.embedding : 0) +
                              (is_last ? pc.last.head + pc.last.final_norm : 0);
  const Framework& fw = training.framework;
  auto buckets = [&] {
    return std::max(1.0, std::ceil(chunk_params / fw.GradBucketElements(plan.grad_group())));
  };
  // Without overlap a gradient reduction is one piece after the backward that
  // produced it (Framework::OverlapsGradReduce).
  const bool grad_overlap = fw.OverlapsGradReduce(pp, r);
  // ZeRO-3: gather again for the backward unless the parameters are kept
  // unsharded from forward to backward (Framework::Reshards).
  const bool reshard = fw.Reshards(pp);
  double& fwd = costs.forward_s[i];
  double& bwd = costs.backward_s[i];
  double dp_in = 0, off_in = 0;
  if (plan.zero >= 3 && (plan.zero_shards() > 1 || params_offload)) {
    // Forward and backward chains of modules, each gathered while the one
    // before computes, with or without the parameter uploads.
    auto chains = [&](bool uploads, Derivation* rec, double* tf, double* tb) {
      const ModuleComm& emb = uploads ? z3.emb_up : z3.emb;
      const ModuleComm& head = uploads ? z3.head_up : z3.head;
      const ModuleComm& lay = uploads ? z3.layer_up : z3.layer;
      const Module front{ek.embedding_forward.total() + sc.tp_emb_fwd, emb.fetch};
      const Module back{ek.head_forward.total() + sc.tp_head_fwd, head.fetch};
      // The chunk's EP all-to-alls spread over its layers (ef, eb: n_moe of them).
      const double ep_f = n > 0 ? ef / n : 0, ep_b = n > 0 ? eb / n : 0;
      const Module layer{layer_fwd + sc.tp_layer_fwd + sc.cp_layer_fwd + ep_f, lay.fetch};
      *tf = PrefetchChain(rec, "chunk.forward", is_first ? &front : nullptr, layers, layer,
                          is_last ? &back : nullptr);
      // Backward (reverse order): gather again (unless kept from the
      // forward), then reduce-scatter the gradient.
      const double again = reshard ? 1.0 : 0.0;
      const Module bfront{ek.head_backward.total() + sc.tp_head_bwd,
                          again * head.fetch + head.scatter};
      const Module bback{ek.embedding_backward.total() + sc.tp_emb_bwd,
                         again * emb.fetch + emb.scatter};
      const Module blayer{layer_bwd + sc.tp_layer_bwd + sc.cp_layer_bwd + ep_b,
                          again * lay.fetch + lay.scatter};
      *tb = PrefetchChain(rec, "chunk.backward", is_last ? &bfront : nullptr, layers, blayer,
                          is_first ? &bback : nullptr);
    };
    double tf = 0, tb = 0;
    chains(params_offload, w, &tf, &tb);
    if (params_offload) {
      // What the uploads add beyond the gathers is offload time.
      double tf0 = 0, tb0 = 0;
      chains(false, nullptr, &tf0, &tb0);
      off_in =
          P3D_TERM(w, "chunk.offload_uploads", "(tf - tf0) + (tb - tb0)", (tf - tf0) + (tb - tb0),
                   "what the parameter uploads add to the gather chains", {"tf", tf}, {"tf0", tf0},
                   {"tb", tb}, {"tb0", tb0});
    }
    dp_in = P3D_TERM(w, "chunk.dp_exposed",
                     "(tf - (fk + ft + fc + ef)) + (tb - (bk + bt + bc + eb)) - off",
                     (tf - (fk + ft + fc + ef)) + (tb - (bk + bt + bc + eb)) - off_in,
                     "ZeRO-3 gathers and reduce-scatters the chains could not hide", {"tf", tf},
                     {"fk", fk}, {"ft", ft}, {"fc", fc}, {"ef", ef}, {"tb", tb}, {"bk", bk}, {"bt", bt},
                     {"bc", bc}, {"eb", eb}, {"off", off_in});
    fwd = tf;
    bwd = tb;
    const double fetches = reshard ? 2.0 : 1.0;
    const double issued = n * (fetches * z3.layer.fetch + z3.layer.scatter) +
                          (is_first ? fetches * z3.emb.fetch + z3.emb.scatter : 0.0) +
                          (is_last ? fetches * z3.head.fetch + z3.head.scatter : 0.0);
    dp_hidden_rank[r] += m * std::max(0.0, issued - dp_in);
  } else {
    const char* formula = plan.ep > 1 ? "n*(layer + tp + cp) + n_moe*ep + edge + edge_tp"
                                      : "n*(layer + tp + cp) + edge + edge_tp";
    fwd = P3D_TERM(w, "chunk.forward", formula, fk + ft + fc + ef,
                   "n layers + embedding/head edges, kernels + TP + CP ring (+ EP all-to-alls)", {"n", n},
                   {"layer", layer_fwd}, {"tp", sc.tp_layer_fwd}, {"cp", sc.cp_layer_fwd},
                   {"edge", edge_fwd}, {"edge_tp", edge_tp_fwd}, {"n_moe", n_moe}, {"ep", sc.ep_layer_fwd});
    bwd = P3D_TERM(w, "chunk.backward", formula, bk + bt + bc + eb,
                   "backward + recompute kernels + TP + CP ring (+ EP)", {"n", n}, {"layer", layer_bwd},
                   {"tp", sc.tp_layer_bwd}, {"cp", sc.cp_layer_bwd}, {"edge", edge_bwd},
                   {"edge_tp", edge_tp_bwd}, {"n_moe", n_moe}, {"ep", sc.ep_layer_bwd});
    if (plan.zero == 2 && plan.zero_shards() > 1) {
      // Gradients reduce-scattered every micro-batch, bucketed under the backward.
      const double issued =
          CollectiveTime(w, "chunk.grad_reduce_scatter", Collective::kReduceScatter,
                         chunk_params * ShardedGradReduceBytes(training), dp_path);
      const double exposed = Exposed(w, "chunk.grad_reduce_scatter.exposed", issued, bwd,
                                     grad_overlap ? buckets() : 1.0);
      bwd += exposed;
      dp_in = exposed;
      dp_hidden_rank[r] += m * (issued - exposed);
    }
  }
  if (plan.zero <= 1 && fw.grad_accumulation_bytes > 0) {
    // A separate pass adds the micro-batch's gradient into the accumulation
    // buffer after its backward (Framework::grad_accumulation_bytes:
    // DeepSpeed's BF16_Optimizer.update_hp_grads), memory-bound.
    const double bytes = fw.grad_accumulation_bytes * chunk_params;
    bwd += P3D_TERM(
        w, "chunk.grad_accumulation", "bytes/(hbm*eff)", MemoryBoundSeconds(cluster.gpu, bytes),
        "the gradient-accumulation pass after each backward", {"bytes", bytes},
        {"hbm", cluster.gpu.hbm_bytes_per_s}, {"eff", HbmEfficiency(cluster.gpu, bytes)});
  }
  if (fw.FsdpWraps(plan)) {
    // FSDP2's own copies around its gathers and reduces (Framework::
    // fsdp_copies), memory-bound and in the step: every gather of a module
    // casts its shard and copies it in, and copies the unsharded parameters
    // out; forward all the chunk's modules, backward again the layers when
    // resharding (the root module keeps its parameters from forward to
    // backward: _fsdp_state.py _lazy_init). Every micro-batch's gradient is
    // copied into the fp32 reduce input, on a shard group of one copied again
    // in place of the reduce-scatter, and from a step's second micro-batch on
    // added into the sharded gradient ((m - 1)/m of the micro-batches).
    const FsdpCopyBytes& c = *fw.fsdp_copies;
    const double Z = plan.zero_shards(), regathered = reshard ? chunk_layer_params : 0.0;
    const double gather = c.gather_shard / Z + c.gather_out;
    const double local = Z == 1 ? c.local_reduce : 0.0;
    const double fwd_bytes = gather * chunk_params;
    const double bwd_bytes = gather * regathered + (c.reduce + local) * chunk_params +
                             c.accumulate * chunk_params / Z * (m - 1) / m;
    fwd += P3D_TERM(w, "chunk.fsdp_copies.forward", "(shard/Z + out)*P/(hbm*eff)",
                    MemoryBoundSeconds(cluster.gpu, fwd_bytes),
                    "FSDP2's cast and copies of every forward gather", {"shard", c.gather_shard}, {"Z", Z},
                    {"out", c.gather_out}, {"P", chunk_params}, {"hbm", cluster.gpu.hbm_bytes_per_s},
                    {"eff", HbmEfficiency(cluster.gpu, fwd_bytes)});
    bwd += P3D_TERM(w, "chunk.fsdp_copies.backward",
                    "((shard/Z + out)*P_re + (reduce + local)*P + acc*P/Z*(m - 1)/m)/(hbm*eff)",
                    MemoryBoundSeconds(cluster.gpu, bwd_bytes),
                    "FSDP2's copies of the backward re-gathers and of the gradient's reduce path",
                    {"shard", c.gather_shard}, {"Z", Z}, {"out", c.gather_out}, {"P_re", regathered},
                    {"reduce", c.reduce}, {"local", local}, {"P", chunk_params}, {"acc", c.accumulate},
                    {"m", m}, {"hbm", cluster.gpu.hbm_bytes_per_s}, {"eff", HbmEfficiency(cluster.gpu, bwd_bytes)});
  }
  if (plan.offload != Offload::kNone && plan.zero >= 2) {
    // ZeRO-2/3 offload: every micro-batch's reduced bf16 gradient shard is
    // copied to the host bucket by bucket under the backward (DeepSpeed
    // ZeRO-Offload); the host accumulates it in fp32.
    const double d2h =
        HostCopy(w, "chunk.offload_d2h_gradients", node,
                 chunk_params * prec.param_bytes / plan.zero_shards());
    const double exposed = Exposed(w, "chunk.offload_d2h_gradients.exposed", d2h, bwd, buckets());
    bwd += exposed;
    off_in += exposed;
  }
  tp_rank[r] += m * (ft + bt);
  cp_rank[r] += m * (fc + bc);
  ep_rank[r] += m * (ef + eb);
  dp_in_rank[r] += m * dp_in;
  off_in_rank[r] += m * off_in;
}

// Virtual stage v's activation send to v + 1 (and its gradient back), one
// micro-batch: scattered over TP (Megatron's scatter-gather optimisation;
// with SP it is already 1/TP), priced on the link between the two ranks.
void TimeModel::Impl::Link(const Plan& plan, int v) {
  const int pp = plan.pp;
  Derivation* w = v % pp == why_chunk_rank ? why : nullptr;
  const double bytes =
      MicroBatchTokens(plan, training) * model.hidden * training.precision.activation_bytes / plan.tp;
  const int stride = PlanGroupSpan(PlanGroup::kPipeline, plan).stride;
  const int a = stride * (v % pp), b = stride * ((v + 1) % pp);
  costs.p2p_s[v] =
      SendRecv(w, "chunk.p2p_send", cluster.network, bytes, std::min(a, b), std::abs(a - b));
}

// After the last backward of pipeline rank r: the gradient reduction's exposed
// part, the ZeRO-1/2 parameter all-gather, the tied-embedding all-reduce, the
// slowdown of the compute the hidden DP traffic ran under, and the optimizer
// (on the GPU, or CPU AdamW with its uploads under offload).
void TimeModel::Impl::StageTail(const Plan& plan, const ShapeCosts& sc, const PlanCommon& pc,
                                int r) {
  const GroupPath& dp_path = pc.dp_path;
  Derivation* w = r == why_tail_rank ? why : nullptr;
  const int pp = plan.pp;
  const Precision& prec = training.precision;
  const NodeSpec& node = cluster.node;
  const GpuSpec& gpu = cluster.gpu;
  const bool offload = plan.offload != Offload::kNone;
  const StageParams stage_params = ParamsOnStage(model, plan, r);
  const double params = stage_params.total();
  // With EP > 1 the routed experts' gradients are reduced (and their
  // optimizer states sharded) over the expert-data-parallel group: DP*TP/(EP*ETP)
  // ranks, stride EP*ETP (Megatron-Core's expert DDP buckets); the rest over DP.
  const double experts = plan.ep > 1 ? stage_params.experts : 0.0, dense = params - experts;
  const GroupPath& edp_path = pc.edp_path;
  auto dp_collective = [&](const char* name, const char* expert_name, Collective kind, double bytes_per_param) {
    return CollectiveTime(w, name, kind, dense * bytes_per_param, dp_path) +
           (experts > 0 ? CollectiveTime(w, expert_name, kind, experts * bytes_per_param, edp_path) : 0.0);
  };
  const Framework& fw = training.framework;
  double tb = 0, tf = 0;
  for (int c = 0; c < plan.vpp; ++c)
    tb += costs.backward_s[r * plan.vpp + c], tf += costs.forward_s[r * plan.vpp + c];
  const double bucket_elems = fw.GradBucketElements(plan.grad_group());
  const double buckets = std::max(1.0, std::ceil(params / bucket_elems));
  // Without overlap the reduction is one piece after the backward
  // (Framework::OverlapsGradReduce).
  const double reduce_buckets = fw.OverlapsGradReduce(pp, r) ? buckets : 1.0;
  // The ZeRO shard: dense parameters over the shard group, routed experts
  // over the expert-DP group (experts is 0 with EP = 1; EP excludes hybrid
  // sharding, rule ep=>zero!=2).
  const double shard = plan.zero >= 1 ? dense / plan.zero_shards() + experts / plan.expert_dp() : params;
  double exposed = 0, gather = 0, tied = 0, replica = 0;
  double issued = 0;  // the gradient reduction over the shard group issued here (ZeRO-0/1)
  if (plan.zero <= 1) {
    // A sharded optimizer (ZeRO-1) reduce-scatters where the framework does
    // (Framework::zero_reduce_scatter).
    const bool rs = plan.zero == 1 && fw.zero_reduce_scatter;
    const double ar = dp_collective(rs ? "tail.grad_reduce_scatter" : "tail.grad_all_reduce",
                                    rs ? "tail.expert_grad_reduce_scatter" : "tail.expert_grad_all_reduce",
                                    rs ? Collective::kReduceScatter : Collective::kAllReduce, prec.grad_bytes);
    exposed = Exposed(w, rs ? "tail.grad_reduce_scatter.exposed" : "tail.grad_all_reduce.exposed",
                      ar, tb, reduce_buckets);
    issued = ar;
    dp_hidden_rank[r] += ar - exposed;
    // ZeRO-1 offload: each reduced bucket's shard is copied to the host
    // (grad_bytes) after its reduction, once per step.
    if (offload) {
      const double copy = HostCopy(w, "tail.offload_d2h_gradients", node, shard * prec.grad_bytes);
      const double both =
          Exposed(w, "tail.all_reduce_then_copy.exposed", ar + copy, tb, reduce_buckets);
      off_tail_rank[r] += P3D_TERM(w, "tail.offload_d2h_gradients.exposed", "both - reduce",
                                   both - exposed, "", {"both", both}, {"reduce", exposed});
    }
  }
  if (plan.zero_shard > 0) {
    // Hybrid sharding: each shard's reduced gradient is all-reduced across
    // the replicas (Megatron-Core's distributed-optimizer instances, FSDP's
    // HYBRID_SHARD), once per step, bucket by bucket behind the shard group's
    // reduction (ZeRO-1; ZeRO-2/3 reduce-scatter per micro-batch and defer
    // the replica all-reduce to the last one, FSDP2 set_requires_all_reduce).
    const double ar = CollectiveTime(w, "tail.replica_all_reduce", Collective::kAllReduce,
                                     shard * prec.grad_bytes, pc.replica_path);
    const double both = Exposed(w, "tail.replica_all_reduce.exposed", issued + ar, tb, reduce_buckets);
    replica = P3D_TERM(w, "tail.replica", "both - reduce", std::max(0.0, both - exposed),
                       "what the replica all-reduce adds to the exposed reduction", {"both", both},
                       {"reduce", exposed});
    dp_hidden_rank[r] += ar - replica;
  }
  if (plan.zero == 1 || plan.zero == 2) {
    // The updated parameters' all-gather: after the optimizer, or bucket by
    // bucket under the next step's first forward (one micro-batch of each
    // chunk of this rank; Framework::param_gather_overlap).
    // FP8 primary weights (Framework::fp8_param_gather) are gathered in FP8:
    // the stage's bytes per parameter averaged over bf16 and FP8 weights.
    const double fp8_w = fw.Fp8PrimaryWeights(training.fp8)
                             ? StageLinearWeights(model, StageKinds(model, plan, r), plan.tp, plan.ep, plan.expert_tp())
                             : 0;
    const double gathered =
        (params - fp8_w) * prec.param_bytes + fp8_w * (1 + Fp8WeightScaleBytes(training.fp8));
    const double ag = dp_collective("tail.param_all_gather", "tail.expert_param_all_gather",
                                    Collective::kAllGather, params > 0 ? gathered / params : 0.0);
    gather =
        fw.param_gather_overlap ? Exposed(w, "tail.param_all_gather.exposed", ag, tf, buckets) : ag;
    dp_hidden_rank[r] += ag - gather;
  }
  if (pp > 1 && model.tie_embeddings && (r == 0 || r == pp - 1)) {
    // Tied word embedding: its gradient is all-reduced between the first and last stage.
    const double emb = static_cast<double>(model.vocab) * model.hidden / plan.tp;
    tied = CollectiveTime(
        w, "tail.tied_embedding_all_reduce", Collective::kAllReduce, emb * prec.grad_bytes,
        GroupPathFor(cluster.network, 2, PlanGroupSpan(PlanGroup::kPipeline, plan).stride * (pp - 1)));
  }
  // Collectives running under the backward take SMs and HBM bandwidth from
  // it: the compute they slow, by the backward's GEMM / memory-bound mix.
  const KernelTime& lb = sc.layer[sc.main].backward;
  const double slowdown =
      lb.total() > 0
          ? (lb.gemm_s * gpu.overlap_slowdown_gemm + lb.memory_s * gpu.overlap_slowdown_memory) /
                lb.total()
          : 0.0;
  dp_slowdown_rank[r] = P3D_TERM(
      w, "tail.overlap_slowdown",
      lb.total() > 0 ? "hidden*(gemm*sg + memory*sm)/(gemm + memory)" : "0",
      slowdown * dp_hidden_rank[r], "compute slowed by the DP collectives hidden under it",
      {"hidden", dp_hidden_rank[r]}, {"gemm", lb.gemm_s}, {"sg", gpu.overlap_slowdown_gemm},
      {"memory", lb.memory_s}, {"sm", gpu.overlap_slowdown_memory});
  dp_tail_rank[r] =
      P3D_TERM(w, "tail.dp", "exposed + replica + gather + tied + slowdown",
               exposed + replica + gather + tied + dp_slowdown_rank[r], "", {"exposed", exposed},
               {"replica", replica}, {"gather", gather}, {"tied", tied},
               {"slowdown", dp_slowdown_rank[r]});
  if (!offload) {
    const double per_param =
        2.0 * (prec.master_bytes + prec.optimizer_bytes) + 2.0 * prec.grad_bytes + prec.param_bytes;
    const double eff = gpu.optimizer_efficiency > 0 ? gpu.optimizer_efficiency : gpu.hbm_efficiency;
    opt_rank[r] = P3D_TERM(w, "tail.optimizer", "bytes_per_param*P_shard/(hbm*eff)",
                           OptimizerSeconds(gpu, prec, shard),
                           "gradient norm + AdamW, memory-bound", {"bytes_per_param", per_param},
                           {"P_shard", shard}, {"hbm", gpu.hbm_bytes_per_s}, {"eff", eff});
    if (training.fp8 != Fp8Recipe::kOff) opt_rank[r] += Fp8WeightCast(plan, r, w);
    return;
  }
  // CPU AdamW on the shard; the updated bf16 shard goes back to the GPU in
  // bucket-sized chunks as the CPU produces them (parameter offload keeps it
  // on the host for the next forward's uploads).
  opt_rank[r] = P3D_TERM(w, "tail.cpu_adam", "gpus*P_shard/rate", CpuAdamSeconds(cluster, shard),
                         "the node's CPU steps the shards of all its GPUs",
                         {"gpus", static_cast<double>(GpusOnNode(cluster))}, {"P_shard", shard},
                         {"rate", CpuAdamParamsPerS(node)});
  if (plan.offload == Offload::kOptimizerAndParams) return;
  const double upload = HostCopy(w, "tail.offload_h2d_params", node, shard * prec.param_bytes);
  const double k = std::max(1.0, std::ceil(shard / bucket_elems));
  off_tail_rank[r] +=
      P3D_TERM(w, "tail.offload_h2d_params.exposed", "max(0, upload - cpu) + min(cpu, upload)/k",
               UploadAfterCpu(opt_rank[r], upload, k),
               "uploads pipelined with the CPU step in bucket-sized chunks", {"upload", upload},
               {"cpu", opt_rank[r]}, {"k", k});
}

// FP8: the stage's linear-layer weights are quantized once per step, in the
// first micro-batch's forward, and the FP8 copies reused by the others
// (Megatron-Core sets is_first_microbatch on its TE modules every step;
// TransformerEngine module/base.py caches the FP8 weight workspaces): read
// param_bytes, write `copies` FP8 copies (docs/time-model.md "FP8"). Counted
// with the optimizer, which produced the weights it casts.
double TimeModel::Impl::Fp8WeightCast(const Plan& plan, int r, Derivation* w) const {
  const double weights = StageLinearWeights(model, StageKinds(model, plan, r), plan.tp, plan.ep, plan.expert_tp());
  const double pb = training.precision.param_bytes, copies = Fp8Copies(cluster.gpu, training.fp8);
  const double s = Fp8WeightScaleBytes(training.fp8);
  const double bytes = weights * (pb + copies * (1 + s));
  const double eff = HbmEfficiency(cluster.gpu, bytes);
  return P3D_TERM(w, "tail.fp8_weight_cast", "W*(param_bytes + copies*(1 + s))/(hbm*eff)",
                  MemoryBoundSeconds(cluster.gpu, bytes), "the stage's linear weights cast to FP8 once per step",
                  {"W", weights}, {"param_bytes", pb}, {"copies", copies}, {"s", s},
                  {"hbm", cluster.gpu.hbm_bytes_per_s}, {"eff", eff});
}

Status TimeModel::Impl::Prepare(const Plan& plan) {
  const ShapeCosts& sc = Shape(plan);
  const int pp = plan.pp, vpp = plan.vpp, stages = pp * vpp;
  costs.pp = pp, costs.vpp = vpp, costs.microbatches = plan.grad_accum;
  costs.forward_s.assign(stages, 0.0);
  costs.backward_s.assign(stages, 0.0);
  costs.p2p_s.assign(stages - 1, 0.0);
  for (std::vector<double>* v : PerRank()) v->assign(pp, 0.0);
  PlanCommon pc;
  const GroupSpan shard = PlanGroupSpan(PlanGroup::kShard, plan);
  const GroupSpan replica = PlanGroupSpan(PlanGroup::kReplica, plan);
  pc.dp_path = GroupPathFor(cluster.network, shard.size, shard.stride);
  pc.replica_path = GroupPathFor(cluster.network, replica.size, replica.stride);
  const LayerKindCounts all = model.CountKinds(0, model.layers);
  pc.mixed = all.count[sc.main] != model.layers;
  pc.edp_path = plan.ep > 1 ? GroupPathFor(cluster.network, plan.expert_dp(), plan.expert_tp() * plan.ep) : pc.dp_path;
  pc.layer_params =
      StageLayerParams(model, all, plan.tp, plan.ep, plan.expert_tp()) / static_cast<double>(model.layers);
  pc.layer_experts = LayerExperts(plan, all) / static_cast<double>(model.layers);
  pc.first = ParamsOnStage(model, plan, 0);
  pc.last = ParamsOnStage(model, plan, pp - 1);
  pc.z3 = Zero3Modules(plan, pc, pc.layer_params, pc.layer_experts);
  for (int r = 0; r < pp; ++r) {
    if (!why && r > 1 && r < pp - 1 && SameWork(plan, 1, r)) {
      CopyRank(plan, 1, r);
      continue;
    }
    for (int c = 0; c < vpp; ++c) Chunk(plan, sc, pc, r, c);
    StageTail(plan, sc, pc, r);
  }
  for (int v = 0; v + 1 < stages; ++v) Link(plan, v);
  return Status::Ok();
}

// Middle pipeline ranks (0 < r < PP-1) hold no embedding or head, and Chunk
// and StageTail depend on the rank only through its layers (StageLayers: one
// count for every middle stage) and the framework's per-stage overlap
// (Framework::OverlapsGradReduce), and where kinds mix, its layer kinds; the links between ranks are priced apart
// (Link). So without recording, Prepare computes rank 1 and copies it to the
// other middle ranks (tests/simulator/time_model_test.cc,
// MiddleRankReuseMatchesEveryRankComputed, holds the two ways equal). A new
// rank-dependent input to Chunk or StageTail belongs here.
bool TimeModel::Impl::SameWork(const Plan& plan, int a, int b) const {
  const Framework& fw = training.framework;
  if (StageLayers(plan, model.layers, a) != StageLayers(plan, model.layers, b) ||
      fw.OverlapsGradReduce(plan.pp, a) != fw.OverlapsGradReduce(plan.pp, b))
    return false;
  // The EP all-to-all overlap depends on the rank's warm-up (EpOverlap).
  if (EpOverlapRuns(training, plan)) return false;
  // Layer kinds (stage_kinds.h): every chunk of the two ranks alike.
  if (!model.moe() && model.sliding_window == 0) return true;
  for (int c = 0; c < plan.vpp; ++c) {
    const LayerKindCounts x = ChunkKinds(model, plan, c * plan.pp + a), y = ChunkKinds(model, plan, c * plan.pp + b);
    for (int k = 0; k < kLayerKinds; ++k)
      if (x.count[k] != y.count[k]) return false;
  }
  return true;
}

void TimeModel::Impl::CopyRank(const Plan& plan, int from, int to) {
  for (int c = 0; c < plan.vpp; ++c) {
    costs.forward_s[to * plan.vpp + c] = costs.forward_s[from * plan.vpp + c];
    costs.backward_s[to * plan.vpp + c] = costs.backward_s[from * plan.vpp + c];
  }
  for (std::vector<double>* v : PerRank()) (*v)[to] = (*v)[from];
}

Status TimeModel::Impl::Run(const Plan& plan, bool with_timeline) {
  Status status;
  const PipeSchedule* schedule = Schedule(plan, &status);
  if (!schedule) return status;
  P3D_RETURN_IF_ERROR(Prepare(plan));
  const int pp = plan.pp;
  P3D_RETURN_IF_ERROR(sim.Run(*schedule, costs, with_timeline, &result));
  double step_end = 0;
  int last_rank = 0;
  for (int r = 0; r < pp; ++r) {
    const double end = result.end_s[r] + dp_tail_rank[r] + opt_rank[r] + off_tail_rank[r];
    if (end > step_end) step_end = end, last_rank = r;
  }
  int crit = 0;
  for (int r = 1; r < pp; ++r)
    if (result.busy_s[r] > result.busy_s[crit]) crit = r;
  Breakdown(crit, last_rank);
  if (with_timeline) {
    for (int r = 0; r < pp; ++r) {
      const double e = result.end_s[r];
      result.events.push_back({r, TimelineKind::kDpComm, -1, 0, e, e + dp_tail_rank[r]});
      // The optimizer interval includes the offload upload that follows it.
      result.events.push_back({r, TimelineKind::kOptimizer, -1, 0, e + dp_tail_rank[r],
                               e + dp_tail_rank[r] + opt_rank[r] + off_tail_rank[r]});
    }
  }
  return Status::Ok();
}

// The step's parts from the busiest rank `crit` (compute, TP, in-stage DP and
// offload) and the rank that ends the step `last_rank` (what it adds after the
// pipeline drains, attributed to the optimizer first, then the offload copies,
// then DP communication); they sum to the step.
void TimeModel::Impl::Breakdown(int crit, int last_rank) {
  Derivation* w = why;
  TimeBreakdown& t = out.time;
  const double busy =
      P3D_TERM(w, "rank.busy", "busy", result.busy_s[crit],
               fmt::format("pipeline rank {}'s forwards and backwards (simulated)", crit),
               {"busy", result.busy_s[crit]});
  const double makespan = result.makespan_s;
  P3D_TERM(w, "pipeline.makespan", "makespan", makespan,
           "first forward to last backward, simulated schedule", {"makespan", makespan});
  // Idle time of the busiest rank (rounding residue of a bubble-free pipeline is 0).
  const bool idle = makespan - busy > 1e-12 * makespan;
  const double slack = idle ? P3D_TERM(w, "rank.idle", "makespan - busy", makespan - busy, "",
                                       {"makespan", makespan}, {"busy", busy})
                            : P3D_TERM(w, "rank.idle", "0", 0, "");
  const double tp = tp_rank[crit], cp = cp_rank[crit], ep = ep_rank[crit], dp_in = dp_in_rank[crit];
  const double off_in = off_in_rank[crit];
  const double p2p = result.critical_p2p_s;
  t.tp_comm_s = P3D_PART(w, "time.tp_comm", "tp", tp,
                         "TP collectives of the busiest rank (not overlapped)", {"tp", tp});
  t.cp_comm_s = P3D_PART(w, "time.cp_comm", "cp", cp,
                         "exposed context-parallel K/V ring transfers of the busiest rank", {"cp", cp});
  t.pp_comm_s = P3D_PART(w, "time.pp_comm", "min(max(p2p, 0), idle)", std::clamp(p2p, 0.0, slack),
                         "p2p on the critical chain", {"p2p", p2p}, {"idle", slack});
  t.bubble_s = P3D_PART(w, "time.bubble", "idle - pp", slack - t.pp_comm_s, "", {"idle", slack},
                        {"pp", t.pp_comm_s});
  t.ep_comm_s = P3D_PART(w, "time.ep_comm", "ep", ep,
                         "EP all-to-alls of the busiest rank (not overlapped)", {"ep", ep});
  t.compute_s = P3D_PART(w, "time.compute", "max(0, busy - tp - cp - ep - dp_in - off_in)",
                         std::max(0.0, busy - tp - cp - ep - dp_in - off_in), "kernels of the busiest rank",
                         {"busy", busy}, {"tp", tp}, {"cp", cp}, {"ep", ep}, {"dp_in", dp_in},
                         {"off_in", off_in});
  const double end = result.end_s[last_rank], dp = dp_tail_rank[last_rank];
  const double opt = opt_rank[last_rank], off = off_tail_rank[last_rank];
  const double tail =
      P3D_TERM(w, "rank.after_drain", "max(0, end - makespan + dp + opt + off)",
               std::max(0.0, (end - makespan) + dp + opt + off),
               fmt::format("what rank {} adds after the pipeline drains", last_rank), {"end", end},
               {"makespan", makespan}, {"dp", dp}, {"opt", opt}, {"off", off});
  t.optimizer_s = P3D_PART(w, "time.optimizer", "min(opt, tail)", std::min(opt, tail), "",
                           {"opt", opt}, {"tail", tail});
  const double off_tail = std::min(off, tail - t.optimizer_s);
  t.offload_s = P3D_PART(w, "time.offload", "off_in + min(off, tail - optimizer)",
                         off_in + off_tail, "exposed host<->GPU copies", {"off_in", off_in},
                         {"off", off}, {"tail", tail}, {"optimizer", t.optimizer_s});
  t.dp_comm_s = P3D_PART(w, "time.dp_comm", "dp_in + tail - optimizer - off_tail",
                         dp_in + (tail - t.optimizer_s - off_tail), "exposed DP/ZeRO collectives",
                         {"dp_in", dp_in}, {"tail", tail}, {"optimizer", t.optimizer_s},
                         {"off_tail", off_tail});
  t.other_s = 0;
  t.step_s = t.compute_s + t.tp_comm_s + t.cp_comm_s + t.ep_comm_s + t.pp_comm_s + t.dp_comm_s + t.bubble_s +
             t.optimizer_s +
             t.offload_s + t.other_s;
  out.critical = crit;
  out.last = last_rank;
  out.makespan = makespan;
}

TimeModel::TimeModel(const ModelSpec& model, const TrainingSpec& training,
                     const ClusterSpec& cluster)
    : impl_(std::make_unique<Impl>(model, training, cluster)) {}
TimeModel::~TimeModel() = default;

double TimeModel::StepSeconds(const Plan& plan) {
  if (!impl_->Run(plan, false).ok()) return std::numeric_limits<double>::infinity();
  return impl_->out.time.step_s;
}

double TimeModel::StepLowerBound(const Plan& plan) {
  Impl& im = *impl_;
  if (!im.Prepare(plan).ok()) return std::numeric_limits<double>::infinity();
  const int pp = plan.pp, vpp = plan.vpp;
  const double m = static_cast<double>(plan.grad_accum);
  double bound = 0, fill = 0;
  for (int r = 0; r < pp; ++r) {
    // Rank r starts no earlier than micro-batch 0 has crossed stages 0..r-1,
    // then runs all its work, then its reduction and optimizer.
    double busy = 0;
    for (int c = 0; c < vpp; ++c)
      busy += m * (im.costs.forward_s[r * vpp + c] + im.costs.backward_s[r * vpp + c]);
    bound =
        std::max(bound, fill + busy + im.dp_tail_rank[r] + im.opt_rank[r] + im.off_tail_rank[r]);
    fill += im.costs.forward_s[r * vpp] + (r + 1 < pp ? im.costs.p2p_s[r] : 0.0);
  }
  return bound;
}

double TimeModel::StepFloor(const Plan& plan) {
  return impl_->floors.Get(FloorKey(plan), [&] { return impl_->StepFloor(plan); });
}

double TimeModel::Impl::StepFloor(const Plan& plan) {
  Impl& im = *this;
  const ShapeCosts& sc = im.Shape(plan);
  const EdgeKernelTimes& ek = sc.edge;
  const int pp = plan.pp;
  const double m = static_cast<double>(plan.grad_accum);
  // The lightest layer kind the model has: a floor for every layer.
  double kernel_fwd = std::numeric_limits<double>::infinity(), kernel_all = kernel_fwd;
  const LayerKindCounts kinds = im.model.CountKinds(0, im.model.layers);
  for (int k = 0; k < kLayerKinds; ++k) {
    if (kinds.count[k] == 0) continue;
    const LayerKernelTimes& lk = sc.layer[k];
    kernel_fwd = std::min(kernel_fwd, lk.forward.total());
    kernel_all = std::min(kernel_all, lk.forward.total() + lk.backward.total() + lk.recompute.total());
  }
  const double layer_fwd = kernel_fwd + sc.tp_layer_fwd;
  const double layer = kernel_all + sc.tp_layer_bwd + sc.tp_layer_fwd;
  const double emb_fwd = ek.embedding_forward.total() + sc.tp_emb_fwd;
  const double emb = emb_fwd + ek.embedding_backward.total() + sc.tp_emb_bwd;
  const double head =
      ek.head_forward.total() + sc.tp_head_fwd + ek.head_backward.total() + sc.tp_head_bwd;
  const double average =
      m * (static_cast<double>(im.model.layers) * layer + emb + head) / static_cast<double>(pp);
  double fill = pp > 1 ? emb_fwd : 0.0;
  for (int r = 0; r + 1 < pp; ++r) fill += static_cast<double>(im.ChunkLayers(plan, r)) * layer_fwd;
  const double last_layers = static_cast<double>(StageLayers(plan, im.model.layers, pp - 1));
  const double last = fill + m * (last_layers * layer + head + (pp == 1 ? emb : 0.0));
  return std::max(average, last);
}

StatusOr<TimeEstimate> TimeModel::Evaluate(const Plan& plan, bool with_timeline) {
  P3D_RETURN_IF_ERROR(impl_->Check(plan));
  P3D_RETURN_IF_ERROR(impl_->Run(plan, with_timeline));
  const Impl& im = *impl_;
  TimeEstimate e;
  e.time = im.out.time;
  e.critical_stage = im.out.critical;
  const double step = e.time.step_s;
  // A defence in depth behind the input limits: no plan is ranked on NaN.
  if (!(step > 0 && std::isfinite(step)))
    return Status::Internal(
        fmt::format("plan {}: the step time is {} (a hardware or profile figure out of range)",
                    PlanSummary(plan), step));
  const double gpus = plan.gpus();
  const double peak = im.cluster.gpu.peak_flops;
  const double batch = static_cast<double>(im.training.global_batch);
  e.model_flops = im.model_flops;
  e.hardware_flops = HardwareFlopsPerStep(im.model, im.training, plan.recompute);
  e.tokens_per_s = batch * im.training.seq / step;
  e.samples_per_s = batch / step;
  e.tflops_per_gpu = e.model_flops / step / gpus / 1e12;
  e.mfu = e.model_flops / (step * gpus * peak);
  e.hfu = e.hardware_flops / (step * gpus * peak);
  e.flop_floor_s = e.model_flops / (gpus * peak);
  if (with_timeline) e.timeline = im.result.events;
  return e;
}

StatusOr<std::vector<DerivedTerm>> TimeModel::Explain(const Plan& plan) {
  P3D_ASSIGN_OR_RETURN(TimeEstimate e, Evaluate(plan));
  Impl& im = *impl_;
  Derivation why;
  why.Add("floor", "flops/(gpus*peak)",
          {{"flops", e.model_flops},
           {"gpus", static_cast<double>(plan.gpus())},
           {"peak", im.cluster.gpu.peak_flops}},
          e.flop_floor_s, "model FLOPs at 100% of peak: no plan on this cluster can step faster");
  im.CostsOfShape(plan, &why);
  // Run again, recording the chunks of the busiest rank and the end of step
  // of the rank that ends it (the same figures Evaluate just produced).
  im.why = &why, im.why_chunk_rank = e.critical_stage, im.why_tail_rank = im.out.last;
  const Status run = im.Run(plan, false);
  im.why = nullptr, im.why_chunk_rank = -1, im.why_tail_rank = -1;
  P3D_RETURN_IF_ERROR(run);
  const double p = plan.pp, v = plan.vpp, m = static_cast<double>(plan.grad_accum);
  why.Add("pipeline.closed_form", "busy*(1 + (PP - 1)/(VPP*m))",
          {{"busy", im.result.busy_s[e.critical_stage]}, {"PP", p}, {"VPP", v}, {"m", m}},
          im.result.busy_s[e.critical_stage] * (1 + (p - 1) / (v * m)),
          fmt::format("even-stage closed form of the {} makespan, for comparison",
                      ScheduleName(ScheduleOf(plan))));
  const TimeBreakdown& t = e.time;
  why.Add("step", "compute + tp + cp + ep + pp + dp + bubble + optimizer + offload",
          {{"compute", t.compute_s},
           {"tp", t.tp_comm_s},
           {"cp", t.cp_comm_s},
           {"ep", t.ep_comm_s},
           {"pp", t.pp_comm_s},
           {"dp", t.dp_comm_s},
           {"bubble", t.bubble_s},
           {"optimizer", t.optimizer_s},
           {"offload", t.offload_s}},
          t.step_s,
          fmt::format("{:.0f} tokens/s, {:.1f} TFLOP/s/GPU, MFU {:.1f}%", e.tokens_per_s,
                      e.tflops_per_gpu, 100 * e.mfu));
  return why.terms();
}

StatusOr<TimeEstimate> EstimateTime(const ModelSpec& model, const TrainingSpec& training,
                                    const ClusterSpec& cluster, const Plan& plan) {
  TimeModel tm(model, training, cluster);
  return tm.Evaluate(plan);
}

StatusOr<std::vector<DerivedTerm>> ExplainTime(const ModelSpec& model, const TrainingSpec& training,
                                               const ClusterSpec& cluster, const Plan& plan) {
  TimeModel tm(model, training, cluster);
  return tm.Explain(plan);
}

StepClaimCheck CheckStepClaim(const ModelSpec& model, const TrainingSpec& training,
                              const ClusterSpec& cluster, double claimed_step_s) {
  StepClaimCheck c;
  c.claimed_s = claimed_step_s;
  c.floor_s = ModelFlopsPerStep(model, training.global_batch, training.seq) /
              (static_cast<double>(cluster.num_gpus) * cluster.gpu.peak_flops);
  c.required_peak = c.floor_s / claimed_step_s;
  c.possible = claimed_step_s >= c.floor_s;
  return c;
}

}  // namespace p3d
