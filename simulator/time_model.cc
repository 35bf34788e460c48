#include "simulator/time_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "models/flops.h"
#include "simulator/comm_model.h"
#include "simulator/compute_model.h"
#include "simulator/memory_model.h"
#include "simulator/pipeline_sim.h"
#include "simulator/schedule.h"

namespace p3d {

namespace {

// Per-shape costs of one micro-batch on one GPU, cached by ComputeShape.
struct ShapeCosts {
  ComputeShape key;
  LayerKernelTimes layer;
  EdgeKernelTimes edge;
  // TP collectives, seconds per micro-batch (exposed: TP comm does not overlap).
  double tp_layer_fwd = 0;  // 2 all-reduces (SP: 2 all-gathers + 2 reduce-scatters)
  double tp_layer_bwd = 0;  // 2 more (+ 2 for the recomputed forward with full recompute)
  double tp_emb_fwd = 0, tp_emb_bwd = 0, tp_head_fwd = 0, tp_head_bwd = 0;
};

bool SameShape(const ComputeShape& a, const ComputeShape& b) {
  return a.tp == b.tp && a.micro_batch == b.micro_batch && a.recompute == b.recompute &&
         a.sequence_parallel == b.sequence_parallel && a.attention == b.attention;
}

// Exposed time of a collective of C seconds that runs in `buckets` equal
// buckets as a backward of Tb seconds produces them: bucket i can start once
// the backward has produced it, and the last bucket only after the backward
// ends, so at least C/buckets is exposed.
double BucketExposed(double c, double tb, double buckets) {
  if (c <= 0) return 0;
  return std::max(c / buckets, c - tb * (buckets - 1) / buckets);
}

// Exposed seconds of one layer's TP collectives, forward and backward, under
// a TpOverlap mode (common/framework.h): ar, rs, ag are one all-reduce,
// reduce-scatter and all-gather of B*S*H activations over TP. A collective
// hidden under a GEMM slows it by `slowdown` per second it runs (SMs and HBM
// the collective takes; GpuSpec::overlap_slowdown_gemm), added to the exposed
// time. Ring exchange (userbuffers' all-gathers) overlaps n-1 chunk
// transfers with n chunk GEMMs: exposed max(0, c - g(n-1)/n); its pipelined
// reduce-scatter of 4 chunks leaves at least the last chunk's exposed.
struct TpExposure {
  double forward = 0, backward = 0;
};
TpExposure TpLayerExposure(TpOverlap mode, const LayerKernelTimes& k, bool sp, int tp, double ar, double rs,
                           double ag, double slowdown) {
  if (mode == TpOverlap::kUserBuffers && !sp) mode = TpOverlap::kAsyncGrad;  // userbuffers need SP
  TpExposure e;
  auto under = [&](double c, double exposed, double* sink) { *sink += exposed + slowdown * (c - exposed); };
  auto ring = [&](double c, double g) { return std::max(0.0, c - g * (tp - 1) / tp); };
  auto bulk = [](double c, double g) { return std::max(0.0, c - g); };
  for (int i = 0; i < 2; ++i) {
    const TpGemmTime& col = k.column[i];
    const TpGemmTime& row = k.row[i];
    if (mode == TpOverlap::kUserBuffers) {
      under(ag, ring(ag, col.fwd), &e.forward);
      under(rs, BucketExposed(rs, row.fwd, 4), &e.forward);
      under(ag, ring(ag, row.dgrad), &e.backward);
      under(ag, bulk(ag, col.dgrad), &e.backward);
      under(rs, bulk(rs, col.wgrad), &e.backward);
      continue;
    }
    e.forward += sp ? ag + rs : ar;
    if (mode == TpOverlap::kNone) {
      e.backward += sp ? ag + rs + ag : ar;
    } else if (sp) {  // async-grad: the column GEMM's re-gather under its dgrad, its RS under its wgrad
      e.backward += ag;
      under(ag, bulk(ag, col.dgrad), &e.backward);
      under(rs, bulk(rs, col.wgrad), &e.backward);
    } else {  // async-grad: the column GEMM's input-gradient all-reduce under its wgrad
      under(ar, bulk(ar, col.wgrad), &e.backward);
    }
  }
  return e;
}

// Prefetched chain of modules (ZeRO-3): module i's parameters are gathered
// (g_i) while module i-1 computes (c_{i-1}):
//   T = g_1 + sum_{i<n} max(c_i, g_{i+1}) + c_n.
// Modules: an optional front edge, n identical layers, an optional back edge.
struct Module {
  double c = 0, g = 0;
};
double PrefetchChain(const Module* front, int64_t n, const Module& layer, const Module* back) {
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
  return t;
}

// Offload (docs/offload.md): seconds of one host<->GPU copy of `bytes` on one
// GPU's link, and of the CPU AdamW over `params` of each GPU on a node (the
// node's CPU serves all its GPUs at once).
double HostCopySeconds(const NodeSpec& node, double bytes) {
  return bytes > 0 ? bytes / (node.pcie_bytes_per_s * kHostLinkEfficiency) : 0.0;
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

}  // namespace

struct TimeModel::Impl {
  ModelSpec model;
  TrainingSpec training;
  ClusterSpec cluster;
  double model_flops = 0;
  std::vector<ShapeCosts> shapes;
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
  std::vector<double> tp_rank, dp_in_rank, dp_tail_rank, opt_rank;
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

  Impl(const ModelSpec& m, const TrainingSpec& t, const ClusterSpec& c)
      : model(m), training(t), cluster(c) {
    model_flops = ModelFlopsPerStep(model, training.global_batch, training.seq);
  }

  const ShapeCosts& Shape(const Plan& plan);
  const PipeSchedule* Schedule(const Plan& plan, Status* status);
  // Fills costs (per-chunk durations, p2p) and the per-rank TP, in-stage DP,
  // end-of-step DP and optimizer seconds: everything but the simulation.
  Status Prepare(const Plan& plan);
  Status Run(const Plan& plan, bool with_timeline);
  int64_t ChunkLayers(const Plan& plan, int v) const {
    const int64_t chunks = static_cast<int64_t>(plan.pp) * plan.vpp;
    return model.layers / chunks + (v < model.layers % chunks ? 1 : 0);
  }
  Status Check(const Plan& plan) const;
};

const ShapeCosts& TimeModel::Impl::Shape(const Plan& plan) {
  const ComputeShape key{plan.tp, plan.micro_batch, plan.recompute,
                         plan.sequence_parallel && plan.tp > 1, plan.attention};
  for (const ShapeCosts& s : shapes)
    if (SameShape(s.key, key)) return s;
  ShapeCosts s;
  s.key = key;
  s.layer = LayerKernels(model, training, cluster.gpu, key);
  s.edge = EdgeKernels(model, training, cluster.gpu, key);
  const GroupPath tp = GroupPathFor(cluster.node, plan.tp, 1);
  const double x = static_cast<double>(plan.micro_batch) * training.seq * model.hidden *
                   training.precision.activation_bytes;  // B*S*H activations
  const double ar = CollectiveSeconds(Collective::kAllReduce, x, tp);
  const double rs = CollectiveSeconds(Collective::kReduceScatter, x, tp);
  const double ag = CollectiveSeconds(Collective::kAllGather, x, tp);
  // Per layer, for each of the two column-parallel GEMMs (q/k/v, fc1) and the
  // two row-parallel ones (out-proj, fc2): forward, the all-gather of the
  // column GEMM's input (SP) and the all-reduce (SP: reduce-scatter) of the row
  // GEMM's output; backward, their conjugates (SP: the all-gather of dY before
  // the row GEMM's input gradient; the all-reduce or reduce-scatter of the
  // column GEMM's input gradient) and with SP the re-gather of the column
  // GEMM's sequence-sharded input for its weight gradient; full recompute
  // repeats the forward's. Framework::tp_overlap hides parts under GEMMs.
  TpExposure tp_exposure = TpLayerExposure(training.framework.tp_overlap, s.layer, key.sequence_parallel,
                                           plan.tp, ar, rs, ag, cluster.gpu.overlap_slowdown_gemm);
  s.tp_layer_fwd = tp_exposure.forward;
  s.tp_layer_bwd = tp_exposure.backward + (plan.recompute == Recompute::kFull ? tp_exposure.forward : 0);
  // Vocab-parallel embedding: partial rows reduced over TP (SP: reduce-scatter;
  // its backward all-gathers the gradient). Head: SP all-gathers the final
  // norm's output (backward: reduce-scatter); without SP the column-parallel
  // logits GEMM all-reduces dX in backward. Vocab-parallel cross-entropy:
  // three all-reduces of B*S fp32 values (max, sum, target logit).
  s.tp_emb_fwd = key.sequence_parallel ? rs : ar;
  s.tp_emb_bwd = key.sequence_parallel ? ag : 0;
  const double ce =
      3 * CollectiveSeconds(Collective::kAllReduce,
                            static_cast<double>(plan.micro_batch) * training.seq * 4, tp);
  s.tp_head_fwd = (key.sequence_parallel ? ag : 0) + ce;
  s.tp_head_bwd = key.sequence_parallel ? rs : ar;
  shapes.push_back(s);
  return shapes.back();
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
  if (p.dp < 1 || p.tp < 1 || p.pp < 1 || p.vpp < 1)
    return Status::InvalidArgument(
        fmt::format("plan: dp, tp, pp and vpp must be >= 1, got dp={} tp={} pp={} vpp={}", p.dp,
                    p.tp, p.pp, p.vpp));
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
    return Status::InvalidArgument(fmt::format("rule gpus=dp*tp*pp: {} x {} x {} != {} GPUs", p.dp,
                                               p.tp, p.pp, cluster.num_gpus));
  if (model.layers < static_cast<int64_t>(p.pp) * p.vpp)
    return Status::InvalidArgument(
        fmt::format("plan: {} layers cannot fill pp*vpp = {} chunks", model.layers, p.pp * p.vpp));
  if (training.seq < 1)
    return Status::InvalidArgument(fmt::format("training: seq must be >= 1, got {}", training.seq));
  const GpuSpec& g = cluster.gpu;
  if (!(g.peak_flops > 0) || !(g.hbm_bytes_per_s > 0) || !(g.hbm_efficiency > 0))
    return Status::InvalidArgument(fmt::format(
        "hardware '{}': peak_flops, hbm_bytes_per_s and hbm_efficiency must be positive", g.name));
  const NodeSpec& n = cluster.node;
  if (n.gpus_per_node < 1 || !(n.intra.bytes_per_s * n.intra.efficiency > 0) ||
      !(n.inter.bytes_per_s * n.inter.efficiency > 0))
    return Status::InvalidArgument(fmt::format(
        "hardware '{}': gpus_per_node and link bandwidths (intra, inter) must be positive",
        g.name));
  if (p.offload != Offload::kNone && !(n.pcie_bytes_per_s > 0))
    return Status::InvalidArgument(fmt::format(
        "hardware '{}': pcie_bytes_per_s must be positive for offload plans", g.name));
  return Status::Ok();
}

Status TimeModel::Impl::Prepare(const Plan& plan) {
  const ShapeCosts& sc = Shape(plan);
  const int pp = plan.pp, vpp = plan.vpp, stages = pp * vpp;
  const double m = static_cast<double>(plan.grad_accum);
  const Precision& prec = training.precision;
  const NodeSpec& node = cluster.node;
  const GpuSpec& gpu = cluster.gpu;

  const GroupPath dp_path = GroupPathFor(node, plan.dp, plan.tp);
  const double layer_params = LayerParamsPerGpu(model, plan.tp);
  const StageParams first = ParamsOnStage(model, plan, 0);
  const StageParams last = ParamsOnStage(model, plan, pp - 1);
  const Framework& fw = training.framework;
  const double bucket_elems = fw.GradBucketElements(plan.dp);
  const bool reshard = fw.Reshards(pp);  // ZeRO-3: gather again for the backward

  costs.pp = pp, costs.vpp = vpp, costs.microbatches = plan.grad_accum;
  costs.forward_s.assign(stages, 0.0);
  costs.backward_s.assign(stages, 0.0);
  costs.p2p_s.assign(stages - 1, 0.0);
  tp_rank.assign(pp, 0.0);
  dp_in_rank.assign(pp, 0.0);
  dp_tail_rank.assign(pp, 0.0);
  dp_hidden_rank.assign(pp, 0.0);
  dp_slowdown_rank.assign(pp, 0.0);
  opt_rank.assign(pp, 0.0);
  off_in_rank.assign(pp, 0.0);
  off_tail_rank.assign(pp, 0.0);
  const bool offload = plan.offload != Offload::kNone;
  const bool params_offload = plan.offload == Offload::kOptimizerAndParams;
  // Parameter offload: a module's bf16 shard (1/DP) is uploaded before its
  // all-gather, every forward and every backward.
  auto upload = [&](double params) {
    return HostCopySeconds(node, params * prec.param_bytes / plan.dp);
  };

  // ZeRO-3 gathers (parameters, bf16) and reduce-scatters (gradients) per module.
  auto gather = [&](double params) {
    return plan.zero >= 3
               ? CollectiveSeconds(Collective::kAllGather, params * prec.param_bytes, dp_path)
               : 0.0;
  };
  // Per-micro-batch gradient reduce-scatter (ZeRO-2/3): the micro-batch's
  // gradient leaves the backward GEMMs at the working precision (bf16) and is
  // accumulated into the rank's fp32 shard after the reduction, since no
  // full-size accumulation buffer exists (the memory model shards it).
  const int reduce_bytes = fw.sharded_grad_reduce_bytes > 0 ? fw.sharded_grad_reduce_bytes : prec.param_bytes;
  auto scatter = [&](double params) {
    return CollectiveSeconds(Collective::kReduceScatter, params * reduce_bytes, dp_path);
  };

  // ZeRO-3 per-module communication, the same for every chunk: computed once.
  struct ModuleComm {
    double fetch = 0, scatter = 0;  // gather (+ upload), gradient reduce-scatter
  };
  struct {
    ModuleComm emb, head, layer, emb_up, head_up, layer_up;
  } z3;
  if (plan.zero >= 3 && (plan.dp > 1 || params_offload)) {
    auto module = [&](double params, bool uploads) {
      return ModuleComm{gather(params) + (uploads ? upload(params) : 0.0), scatter(params)};
    };
    const double head_params = last.head + last.final_norm;
    z3.emb = module(first.embedding, false), z3.emb_up = module(first.embedding, true);
    z3.head = module(head_params, false), z3.head_up = module(head_params, true);
    z3.layer = module(layer_params, false), z3.layer_up = module(layer_params, true);
  }

  const double layer_fwd_k = sc.layer.forward.total();
  const double layer_bwd_k = sc.layer.backward.total() + sc.layer.recompute.total();
  std::vector<double>& fwd = costs.forward_s;
  std::vector<double>& bwd = costs.backward_s;
  for (int r = 0; r < pp; ++r) {
    // Without overlap a gradient reduction is one piece after the backward
    // that produced it (Framework::OverlapsGradReduce).
    const bool grad_overlap = fw.OverlapsGradReduce(pp, r);
    for (int c = 0; c < vpp; ++c) {
      const int v = c * pp + r;
      const int i = r * vpp + c;
      const int64_t n = ChunkLayers(plan, v);
      const bool is_first = v == 0, is_last = v == stages - 1;
      const double nd = static_cast<double>(n);
      double fk = nd * layer_fwd_k, bk = nd * layer_bwd_k;
      double ft = nd * sc.tp_layer_fwd, bt = nd * sc.tp_layer_bwd;
      double chunk_params = nd * layer_params;
      Module front, back, layer{0, 0};
      if (is_first) {
        fk += sc.edge.embedding_forward.total(), bk += sc.edge.embedding_backward.total();
        ft += sc.tp_emb_fwd, bt += sc.tp_emb_bwd;
        chunk_params += first.embedding;
      }
      if (is_last) {
        fk += sc.edge.head_forward.total(), bk += sc.edge.head_backward.total();
        ft += sc.tp_head_fwd, bt += sc.tp_head_bwd;
        chunk_params += last.head + last.final_norm;
      }
      double dp_in = 0, off_in = 0;
      if (plan.zero >= 3 && (plan.dp > 1 || params_offload)) {
        // Forward and backward chains, with or without the parameter uploads.
        auto chains = [&](bool uploads, double* tf, double* tb) {
          const ModuleComm& emb = uploads ? z3.emb_up : z3.emb;
          const ModuleComm& head = uploads ? z3.head_up : z3.head;
          const ModuleComm& lay = uploads ? z3.layer_up : z3.layer;
          // Forward: gather each module's parameters, prefetched one ahead.
          front = {sc.edge.embedding_forward.total() + sc.tp_emb_fwd, emb.fetch};
          back = {sc.edge.head_forward.total() + sc.tp_head_fwd, head.fetch};
          layer = {layer_fwd_k + sc.tp_layer_fwd, lay.fetch};
          *tf = PrefetchChain(is_first ? &front : nullptr, n, layer, is_last ? &back : nullptr);
          // Backward (reverse order): gather again (unless kept from the
          // forward), then reduce-scatter the gradient.
          const double again = reshard ? 1.0 : 0.0;
          Module bfront{sc.edge.head_backward.total() + sc.tp_head_bwd, again * head.fetch + head.scatter};
          Module bback{sc.edge.embedding_backward.total() + sc.tp_emb_bwd, again * emb.fetch + emb.scatter};
          Module blayer{layer_bwd_k + sc.tp_layer_bwd, again * lay.fetch + lay.scatter};
          *tb = PrefetchChain(is_last ? &bfront : nullptr, n, blayer, is_first ? &bback : nullptr);
        };
        double tf = 0, tb = 0;
        chains(params_offload, &tf, &tb);
        if (params_offload) {
          // What the uploads add beyond the gathers is offload time.
          double tf0 = 0, tb0 = 0;
          chains(false, &tf0, &tb0);
          off_in = (tf - tf0) + (tb - tb0);
        }
        dp_in = (tf - (fk + ft)) + (tb - (bk + bt)) - off_in;
        fwd[i] = tf;
        bwd[i] = tb;
        const double fetches = reshard ? 2.0 : 1.0;
        const double issued = nd * (fetches * z3.layer.fetch + z3.layer.scatter) +
                              (is_first ? fetches * z3.emb.fetch + z3.emb.scatter : 0.0) +
                              (is_last ? fetches * z3.head.fetch + z3.head.scatter : 0.0);
        dp_hidden_rank[r] += m * std::max(0.0, issued - dp_in);
      } else {
        fwd[i] = fk + ft;
        bwd[i] = bk + bt;
        if (plan.zero == 2 && plan.dp > 1) {
          // Gradients reduce-scattered every micro-batch, bucketed under the backward.
          const double issued = scatter(chunk_params);
          const double exposed =
              BucketExposed(issued, bwd[i], grad_overlap ? std::max(1.0, std::ceil(chunk_params / bucket_elems)) : 1.0);
          bwd[i] += exposed;
          dp_in = exposed;
          dp_hidden_rank[r] += m * (issued - exposed);
        }
      }
      if (offload && plan.zero >= 2) {
        // ZeRO-2/3 offload: every micro-batch's reduced bf16 gradient shard is
        // copied to the host bucket by bucket under the backward (DeepSpeed
        // ZeRO-Offload); the host accumulates it in fp32.
        const double d2h = HostCopySeconds(node, chunk_params * prec.param_bytes / plan.dp);
        const double exposed =
            BucketExposed(d2h, bwd[i], std::max(1.0, std::ceil(chunk_params / bucket_elems)));
        bwd[i] += exposed;
        off_in += exposed;
      }
      tp_rank[r] += m * (ft + bt);
      dp_in_rank[r] += m * dp_in;
      off_in_rank[r] += m * off_in;
      if (!is_last) {
        // Activation of one micro-batch, scattered over TP (Megatron's
        // scatter-gather optimisation; with SP it is already 1/TP).
        const double bytes = static_cast<double>(plan.micro_batch) * training.seq * model.hidden *
                             prec.activation_bytes / plan.tp;
        const int a = plan.tp * plan.dp * (v % pp), b = plan.tp * plan.dp * ((v + 1) % pp);
        costs.p2p_s[v] = SendRecvSeconds(node, bytes, std::min(a, b), std::abs(a - b));
      }
    }
  }
  // After the last backward: gradient reduction, optimizer, parameter gather.
  for (int r = 0; r < pp; ++r) {
    const bool grad_overlap = fw.OverlapsGradReduce(pp, r);
    const StageParams sp = ParamsOnStage(model, plan, r);
    const double params = sp.total();
    double tb = 0, tf = 0;
    for (int c = 0; c < vpp; ++c) tb += bwd[r * vpp + c], tf += fwd[r * vpp + c];
    const double buckets = std::max(1.0, std::ceil(params / bucket_elems));
    const double shard = params / (plan.zero >= 1 ? plan.dp : 1);
    double tail = 0;
    if (plan.zero <= 1) {
      // A sharded optimizer (ZeRO-1) reduce-scatters where the framework does.
      const Collective reduce =
          plan.zero == 1 && fw.zero_reduce_scatter ? Collective::kReduceScatter : Collective::kAllReduce;
      const double ar = CollectiveSeconds(reduce, params * prec.grad_bytes, dp_path);
      const double exposed = BucketExposed(ar, tb, grad_overlap ? buckets : 1.0);
      tail += exposed;
      dp_hidden_rank[r] += ar - exposed;
      // ZeRO-1 offload: each reduced bucket's shard is copied to the host
      // (grad_bytes) after its reduction, once per step.
      if (offload)
        off_tail_rank[r] += BucketExposed(ar + HostCopySeconds(node, shard * prec.grad_bytes), tb,
                                          grad_overlap ? buckets : 1.0) -
                            exposed;
    }
    if (plan.zero == 1 || plan.zero == 2) {
      // The updated parameters' all-gather: after the optimizer, or bucket by
      // bucket under the next step's first forward (one micro-batch of each
      // chunk of this rank).
      const double ag = CollectiveSeconds(Collective::kAllGather, params * prec.param_bytes, dp_path);
      const double exposed = fw.param_gather_overlap ? BucketExposed(ag, tf, buckets) : ag;
      tail += exposed;
      dp_hidden_rank[r] += ag - exposed;
    }
    if (pp > 1 && model.tie_embeddings && (r == 0 || r == pp - 1)) {
      // Tied word embedding: its gradient is all-reduced between the first and last stage.
      const double emb = static_cast<double>(model.vocab) * model.hidden / plan.tp;
      tail += CollectiveSeconds(Collective::kAllReduce, emb * prec.grad_bytes,
                                GroupPathFor(node, 2, plan.tp * plan.dp * (pp - 1)));
    }
    // Collectives running under the backward take SMs and HBM bandwidth from
    // it: the compute they slow, by the backward's GEMM / memory-bound mix.
    const KernelTime& lb = sc.layer.backward;
    const double slowdown = lb.total() > 0 ? (lb.gemm_s * gpu.overlap_slowdown_gemm +
                                              lb.memory_s * gpu.overlap_slowdown_memory) /
                                                 lb.total()
                                           : 0.0;
    dp_slowdown_rank[r] = slowdown * dp_hidden_rank[r];
    dp_tail_rank[r] = tail + dp_slowdown_rank[r];
    if (!offload) {
      opt_rank[r] = OptimizerSeconds(gpu, prec, shard);
    } else {
      // CPU AdamW on the shard; the updated bf16 shard goes back to the GPU in
      // bucket-sized chunks as the CPU produces them (parameter offload keeps
      // it on the host for the next forward's uploads).
      opt_rank[r] = CpuAdamSeconds(cluster, shard);
      if (!params_offload)
        off_tail_rank[r] += UploadAfterCpu(opt_rank[r], HostCopySeconds(node, shard * prec.param_bytes),
                                           std::max(1.0, std::ceil(shard / bucket_elems)));
    }
  }

  return Status::Ok();
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
  TimeBreakdown& t = out.time;
  const double busy = result.busy_s[crit];
  t.tp_comm_s = tp_rank[crit];
  // Idle time of the busiest rank (rounding residue of a bubble-free pipeline is 0).
  double slack = result.makespan_s - busy;
  if (slack <= 1e-12 * result.makespan_s) slack = 0;
  t.pp_comm_s = std::clamp(result.critical_p2p_s, 0.0, slack);
  t.bubble_s = slack - t.pp_comm_s;
  t.compute_s = std::max(0.0, busy - t.tp_comm_s - dp_in_rank[crit] - off_in_rank[crit]);
  // What the last rank to finish adds after the pipeline drains (its early end
  // hides part of its reduction, optimizer and offload copies), attributed to
  // the optimizer first, then the offload copies, then DP communication.
  const double tail =
      std::max(0.0, (result.end_s[last_rank] - result.makespan_s) + dp_tail_rank[last_rank] +
                        opt_rank[last_rank] + off_tail_rank[last_rank]);
  t.optimizer_s = std::min(opt_rank[last_rank], tail);
  const double off_tail = std::min(off_tail_rank[last_rank], tail - t.optimizer_s);
  t.offload_s = off_in_rank[crit] + off_tail;
  t.dp_comm_s = dp_in_rank[crit] + (tail - t.optimizer_s - off_tail);
  t.other_s = 0;
  t.step_s = t.compute_s + t.tp_comm_s + t.pp_comm_s + t.dp_comm_s + t.bubble_s + t.optimizer_s +
             t.offload_s + t.other_s;
  out.critical = crit;
  out.last = last_rank;
  out.makespan = result.makespan_s;
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
    bound = std::max(bound, fill + busy + im.dp_tail_rank[r] + im.opt_rank[r] + im.off_tail_rank[r]);
    fill += im.costs.forward_s[r * vpp] + (r + 1 < pp ? im.costs.p2p_s[r] : 0.0);
  }
  return bound;
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
    return Status::Internal(fmt::format("plan {}: the step time is {} (a hardware or profile figure out of range)",
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

StatusOr<std::vector<TimeTerm>> TimeModel::Explain(const Plan& plan) {
  P3D_ASSIGN_OR_RETURN(TimeEstimate e, Evaluate(plan));
  const Impl& im = *impl_;
  const ShapeCosts& sc = impl_->Shape(plan);
  const ModelSpec& md = im.model;
  const GpuSpec& gpu = im.cluster.gpu;
  const double ms = 1e3;
  std::vector<TimeTerm> t;
  auto add = [&](std::string name, std::string formula, std::string substituted, double s,
                 bool in_step = false) {
    t.push_back({std::move(name), std::move(formula), std::move(substituted), s, in_step});
  };
  add("floor", "model FLOPs / (GPUs * peak)",
      fmt::format("{:.4g} / ({} * {:.0f} TFLOP/s)", e.model_flops, plan.gpus(),
                  gpu.peak_flops / 1e12),
      e.flop_floor_s);
  const std::string mb =
      fmt::format("B={} S={} H={} TP={}", plan.micro_batch, im.training.seq, md.hidden, plan.tp);
  add("layer.forward.gemm",
      gpu.attention_efficiency.empty()
          ? "sum over sharded GEMMs max(2MNK / (peak * eff(2MNK)), bytes / HBM)"
          : "sum over sharded GEMMs max(2MNK / (peak * eff(2MNK)), bytes / HBM) + attention "
            "core F / (peak * calibrated core eff(F))",
      mb + fmt::format(", per micro-batch: {:.3f} ms", sc.layer.forward.gemm_s * ms),
      sc.layer.forward.gemm_s);
  add("layer.forward.memory", "bytes of norms, softmax, activation, residual, rotary / (HBM * eff)",
      fmt::format("{:.0f} GB/s * {:.2f}: {:.3f} ms", gpu.hbm_bytes_per_s / 1e9, gpu.hbm_efficiency,
                  sc.layer.forward.memory_s * ms),
      sc.layer.forward.memory_s);
  add("layer.backward", "dX and dW GEMMs + memory-bound backward ops",
      fmt::format("{:.3f} + {:.3f} ms", sc.layer.backward.gemm_s * ms,
                  sc.layer.backward.memory_s * ms),
      sc.layer.backward.total());
  add("layer.recompute", "none: 0; selective: attention core forward; full: whole layer forward",
      fmt::format("{}: {:.3f} ms", RecomputeName(plan.recompute), sc.layer.recompute.total() * ms),
      sc.layer.recompute.total());
  add("layer.tp_comm", "2 all-reduces fwd + 2 bwd (+2 full recompute) of B*S*H*a over TP",
      fmt::format("fwd {:.3f} ms, bwd {:.3f} ms", sc.tp_layer_fwd * ms, sc.tp_layer_bwd * ms),
      sc.tp_layer_fwd + sc.tp_layer_bwd);
  const int crit = im.out.critical;
  double f = 0, b = 0;
  for (int c = 0; c < plan.vpp; ++c)
    f += im.costs.forward_s[crit * plan.vpp + c], b += im.costs.backward_s[crit * plan.vpp + c];
  add("stage.busiest", "per micro-batch forward + backward on the busiest pipeline rank",
      fmt::format("rank {}: {:.3f} + {:.3f} ms, x m={}", crit, f * ms, b * ms, plan.grad_accum),
      im.result.busy_s[crit]);
  const double p = plan.pp, v = plan.vpp, mm = static_cast<double>(plan.grad_accum);
  add("pipeline.makespan",
      std::string("simulated ") + ScheduleName(ScheduleOf(plan)) +
          "; even-stage closed form busy * (1 + (p-1)/(v*m))",
      fmt::format("{:.3f} s simulated vs {:.3f} s closed form", im.out.makespan,
                  im.result.busy_s[crit] * (1 + (p - 1) / (v * mm))),
      im.out.makespan);
  double p2p = 0;
  for (double x : im.costs.p2p_s) p2p = std::max(p2p, x);
  add("pp.p2p", "B*S*H*a/TP bytes per boundary / link bw + latency",
      fmt::format("{:.3f} ms per transfer (slowest boundary)", p2p * ms), p2p);
  add("dp.tail",
      "ZeRO-0/1 all-reduce exposed beyond the last backward (buckets); ZeRO-1/2 "
      "parameter all-gather; tied-embedding all-reduce; + slowdown * DP collectives hidden "
      "under compute",
      fmt::format("rank {}: {:.3f} ms, of which slowdown {:.3f} ms ({:.3f} ms hidden x {:.2f} "
                  "gemm / {:.2f} memory-bound)",
                  im.out.last, im.dp_tail_rank[im.out.last] * ms,
                  im.dp_slowdown_rank[im.out.last] * ms, im.dp_hidden_rank[im.out.last] * ms,
                  gpu.overlap_slowdown_gemm, gpu.overlap_slowdown_memory),
      im.dp_tail_rank[im.out.last]);
  if (plan.offload != Offload::kNone) {
    // Unoverlapped per-step figures of one GPU of the rank that ends the step;
    // time.offload and time.optimizer are what of them is exposed.
    const Precision& pr = im.training.precision;
    const NodeSpec& node = im.cluster.node;
    const double params = ParamsOnStage(md, plan, im.out.last).total();
    const double shard = params / plan.dp;
    const double gbps = node.pcie_bytes_per_s * kHostLinkEfficiency / 1e9;
    const bool per_micro = plan.zero >= 2;
    const double d2h_bytes = per_micro ? mm * shard * pr.param_bytes : shard * pr.grad_bytes;
    add("offload.d2h_gradients",
        per_micro ? "m * param_bytes * P_r/DP / (pcie * eff): each micro-batch's reduced gradient "
                    "shard, under its backward"
                  : "grad_bytes * P_r/DP / (pcie * eff): the reduced gradient shard once per step",
        fmt::format("{:.4g} GB / ({:.1f} GB/s * {})", d2h_bytes / 1e9,
                    node.pcie_bytes_per_s / 1e9, kHostLinkEfficiency),
        HostCopySeconds(node, d2h_bytes));
    add("offload.cpu_adam", "GPUs per node * P_r/DP / CPU AdamW params/s of the node",
        fmt::format("{} * {:.4g} / {:.3g}", GpusOnNode(im.cluster), shard,
                    CpuAdamParamsPerS(node)),
        CpuAdamSeconds(im.cluster, shard));
    if (plan.offload == Offload::kOptimizer) {
      add("offload.h2d_params",
          "param_bytes * P_r/DP / (pcie * eff), pipelined with the CPU step in 25M-param chunks",
          fmt::format("{:.4g} GB at {:.1f} GB/s", shard * pr.param_bytes / 1e9, gbps),
          HostCopySeconds(node, shard * pr.param_bytes));
    } else {
      add("offload.param_uploads",
          "2 * m * param_bytes * P_r/DP / (pcie * eff): every forward and backward, prefetched "
          "with the ZeRO-3 gathers",
          fmt::format("2 * {} * {:.4g} GB at {:.1f} GB/s", plan.grad_accum,
                      shard * pr.param_bytes / 1e9, gbps),
          HostCopySeconds(node, 2 * mm * shard * pr.param_bytes));
    }
  }
  const TimeBreakdown& tb = e.time;
  add("time.compute", "kernels of the busiest rank", fmt::format("{:.4f} s", tb.compute_s),
      tb.compute_s, true);
  add("time.tp_comm", "TP collectives of the busiest rank (not overlapped)",
      fmt::format("{:.4f} s", tb.tp_comm_s), tb.tp_comm_s, true);
  add("time.pp_comm", "p2p on the critical chain", fmt::format("{:.4f} s", tb.pp_comm_s),
      tb.pp_comm_s, true);
  add("time.dp_comm", "exposed DP/ZeRO collectives", fmt::format("{:.4f} s", tb.dp_comm_s),
      tb.dp_comm_s, true);
  add("time.bubble", "makespan - busy - pp_comm", fmt::format("{:.4f} s", tb.bubble_s), tb.bubble_s,
      true);
  add("time.optimizer",
      plan.offload == Offload::kNone
          ? "norm + AdamW bytes/param * params on the GPU / (HBM * optimizer eff, else HBM eff)"
                                     : "CPU AdamW (offload.cpu_adam), exposed after the pipeline",
      fmt::format("{:.4f} s", tb.optimizer_s), tb.optimizer_s, true);
  add("time.offload", "exposed host<->GPU copies (gradients, parameter uploads)",
      fmt::format("{:.4f} s", tb.offload_s), tb.offload_s, true);
  add("time.other", "not modelled", "0", tb.other_s, true);
  add("step", "sum of time.*",
      fmt::format("{:.3f} s -> {:.0f} tokens/s, {:.1f} TFLOP/s/GPU, MFU {:.1f}%", tb.step_s,
                  e.tokens_per_s, e.tflops_per_gpu, 100 * e.mfu),
      tb.step_s);
  return t;
}

StatusOr<TimeEstimate> EstimateTime(const ModelSpec& model, const TrainingSpec& training,
                                    const ClusterSpec& cluster, const Plan& plan) {
  TimeModel tm(model, training, cluster);
  return tm.Evaluate(plan);
}

StatusOr<std::vector<TimeTerm>> ExplainTime(const ModelSpec& model, const TrainingSpec& training,
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
