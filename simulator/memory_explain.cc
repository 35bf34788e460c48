// ExplainMemory: the memory model's terms as a course would derive them, each
// with its formula and the numbers put in. The bytes are StageMemoryDetails'
// own figures, so the derivation always sums to the estimate.
#include <fmt/format.h>

#include <algorithm>

#include "simulator/memory_model.h"
#include "simulator/memory_terms.h"

namespace p3d {
namespace {

std::string N(double v) { return fmt::format("{:.6g}", v); }

std::string StageParamsText(const StageParams& p, int64_t layers, double per_layer) {
  return fmt::format("({} * {} + {} + {} + {})", layers, N(per_layer), N(p.embedding), N(p.head),
                     N(p.final_norm));
}

std::string InFlightFormula(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return "m";
    case ScheduleKind::k1F1B:
      return "min(m, PP - r)";
    case ScheduleKind::kInterleaved1F1B:
      return "min(m*VPP, (VPP-1)*PP + 2*(PP-r-1) + 1) / VPP";
  }
  return "m";
}

std::string InFlightSubstituted(ScheduleKind kind, const Plan& plan, int stage) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return fmt::format("{}", plan.grad_accum);
    case ScheduleKind::k1F1B:
      return fmt::format("min({}, {} - {})", plan.grad_accum, plan.pp, stage);
    case ScheduleKind::kInterleaved1F1B:
      return fmt::format("min({}*{}, ({}-1)*{} + 2*({}-{}-1) + 1) / {}", plan.grad_accum, plan.vpp,
                         plan.vpp, plan.pp, plan.pp, stage, plan.vpp);
  }
  return "";
}

// Attention scores, softmax and dropout of one layer, one micro-batch (the
// unfused core), or the fused core's fp32 row log-sum-exp.
std::pair<std::string, std::string> ScoresFormula(const ModelSpec& model, const TrainingSpec& t,
                                                  const Plan& plan) {
  const int e = t.precision.activation_bytes;
  if (plan.attention == AttentionImpl::kFused)
    return {"4*B*S*NH/TP (fused attention: fp32 row log-sum-exp)",
            fmt::format("4*{}*{}*{}/{}", plan.micro_batch, t.seq, model.heads, plan.tp)};
  return {"B*S*S*NH/TP*(e + drop*(1+e))",
          fmt::format("{}*{}*{}*{}/{}*({} + {}*(1+{}))", plan.micro_batch, t.seq, t.seq,
                      model.heads, plan.tp, e, t.dropout ? 1 : 0, e)};
}

// Per-layer stored bytes: formula and substitution for the plan's recompute mode.
std::pair<std::string, std::string> LayerFormula(const ModelSpec& model, const TrainingSpec& t,
                                                 const Plan& plan) {
  const int e = t.precision.activation_bytes;
  const int drop = t.dropout ? 1 : 0;
  const int sp_div = plan.sequence_parallel && plan.tp > 1 ? plan.tp : 1;
  const int c = model.arch == Arch::kGpt2 ? 2 : 3;
  const double kvd = memory_internal::KvDimPerRank(model, plan.tp);
  const std::string bs = fmt::format("{}*{}", plan.micro_batch, t.seq);
  const std::string stored =
      "e*B*S*H/SPd*(3+k) + drop*2*B*S*H/SPd + e*B*S*(2*H/TP + 2*KVD_r + c*k*F/TP)";
  const std::string stored_sub = fmt::format(
      "{e}*{bs}*{h}/{spd}*(3+{k}) + {drop}*2*{bs}*{h}/{spd} + {e}*{bs}*(2*{h}/{tp} + 2*{kvd} + "
      "{c}*{k}*{f}/{tp})",
      fmt::arg("e", e), fmt::arg("bs", bs), fmt::arg("h", model.hidden), fmt::arg("spd", sp_div),
      fmt::arg("k", model.experts_per_token), fmt::arg("drop", drop), fmt::arg("tp", plan.tp),
      fmt::arg("kvd", N(kvd)), fmt::arg("c", c), fmt::arg("f", model.ffn));
  const auto [scores, scores_sub] = ScoresFormula(model, t, plan);
  switch (plan.recompute) {
    case Recompute::kNone:
      return {stored + " + " + scores, stored_sub + " + " + scores_sub};
    case Recompute::kSelective:  // the fused core keeps its lse (nothing S x S to drop)
      if (plan.attention == AttentionImpl::kFused)
        return {stored + " + " + scores, stored_sub + " + " + scores_sub};
      return {stored, stored_sub};
    case Recompute::kFull:
      return {"e*B*S*H/SPd", fmt::format("{}*{}*{}/{}", e, bs, model.hidden, sp_div)};
  }
  return {};
}

}  // namespace

std::vector<MemoryTerm> ExplainMemory(const ModelSpec& model, const TrainingSpec& training,
                                      const ClusterSpec& cluster, const Plan& plan, int stage) {
  const StageMemoryDetail d = StageMemoryDetails(model, training, cluster, plan, stage);
  const Precision& p = training.precision;
  const double per_layer = LayerParamsPerGpu(model, plan.tp);
  const std::string params = StageParamsText(d.params, d.layers, per_layer);
  const std::string p_formula = "(L_r * P_layer + P_embedding + P_head + P_final_norm)";
  const int e = p.activation_bytes;
  const int sp_div = plan.sequence_parallel && plan.tp > 1 ? plan.tp : 1;
  const std::string bs = fmt::format("{}*{}", plan.micro_batch, training.seq);
  const ScheduleKind kind = ScheduleOf(plan);
  auto shard = [&](bool sharded) { return sharded ? plan.dp : 1; };

  // A term offload moves to the host is 0 on the GPU (ExplainHostMemory has it).
  const bool offload = plan.offload != Offload::kNone;
  const bool params_offload = plan.offload == Offload::kOptimizerAndParams;
  auto on_gpu = [](bool offloaded, std::string text) {
    return offloaded ? "0 (offloaded to the host)" : text;
  };
  std::vector<MemoryTerm> t;
  t.push_back({"weights", "param_bytes * " + p_formula + " / (ZeRO>=3 ? DP : 1); 0 with --offload params",
               on_gpu(params_offload,
                      fmt::format("{} * {} / {}", p.param_bytes, params, shard(plan.zero >= 3))),
               d.memory.weights});
  t.push_back({"gradients",
               "grad_bytes * " + p_formula + " / (ZeRO>=2 ? DP : 1); 0 with offload and ZeRO>=2",
               on_gpu(offload && plan.zero >= 2,
                      fmt::format("{} * {} / {}", p.grad_bytes, params, shard(plan.zero >= 2))),
               d.memory.gradients});
  t.push_back({"optimizer",
               "(master_bytes + adam_bytes) * " + p_formula + " / (ZeRO>=1 ? DP : 1); 0 with offload",
               on_gpu(offload, fmt::format("({} + {}) * {} / {}", p.master_bytes, p.optimizer_bytes,
                                           params, shard(plan.zero >= 1))),
               d.memory.optimizer});

  auto [layer_formula, layer_sub] = LayerFormula(model, training, plan);
  t.push_back({"activations.layers",
               fmt::format("[{}] * L_r * m_r, m_r = {}", layer_formula, InFlightFormula(kind)),
               fmt::format("[{}] * {} * {}, m_r = {} = {}", layer_sub, d.layers, N(d.in_flight),
                           InFlightSubstituted(kind, plan, stage), N(d.in_flight)),
               d.layer_activations});
  // Recomputed tensors of one layer, one micro-batch: selective recomputes
  // the scores, full the whole layer (the no-recompute per-layer formula).
  std::pair<std::string, std::string> working{"0 (no recompute)", "0"};
  const bool nothing_recomputed = plan.recompute == Recompute::kNone ||
                                  (plan.recompute == Recompute::kSelective &&
                                   plan.attention == AttentionImpl::kFused);
  if (!nothing_recomputed) {
    Plan whole = plan;
    whole.recompute = Recompute::kNone;
    working = plan.recompute == Recompute::kFull ? LayerFormula(model, training, whole)
                                                 : ScoresFormula(model, training, plan);
  }
  t.push_back(
      {"activations.recompute_working_set", working.first, working.second, d.recompute_working});
  t.push_back({"activations.embedding", "r == 0 ? drop * B*S*H/SPd * m_r : 0",
               fmt::format("{} ? {} * {}*{}/{} * {} : 0", stage == 0, training.dropout ? 1 : 0, bs,
                           model.hidden, sp_div, N(d.in_flight)),
               d.embedding_activations});
  t.push_back(
      {"activations.loss",
       "r == PP-1 ? m_loss * (2*e*B*S*H/SPd + T_c * V/TP * (e + 4)) : 0, m_loss = GPipe ? m : 1",
       fmt::format("{} ? {} * (2*{}*{}*{}/{} + {} * {}/{} * ({} + 4)) : 0", stage == plan.pp - 1,
                   kind == ScheduleKind::kGPipe ? plan.grad_accum : 1, e, bs, model.hidden, sp_div,
                   N(memory_internal::LogitTokens(training, plan)), model.vocab, plan.tp, e),
       d.loss_activations});

  t.push_back(
      {"buffers.zero3_gather",
       fmt::format("ZeRO==3 && (DP>1 || --offload params) ? param_bytes * {} * max(P_layer, "
                   "P_embedding, P_head) : 0",
                   kZero3PrefetchModules),
       fmt::format("{} ? {} * {} * max({}, {}, {}) : 0",
                   plan.zero >= 3 && (plan.dp > 1 || params_offload),
                   p.param_bytes, kZero3PrefetchModules, N(per_layer), N(d.params.embedding),
                   N(d.params.head)),
       d.zero3_gather});
  t.push_back({"buffers.grad_buckets",
               fmt::format("DP>1 || (offload && ZeRO>=2) ? grad_bytes * min({} * {:g}, P_stage) : 0",
                           kGradBuckets, training.framework.GradBucketElements(plan.dp)),
               fmt::format("{} ? {} * min({:g}, {}) : 0", plan.dp > 1 || (offload && plan.zero >= 2),
                           p.grad_bytes,
                           kGradBuckets * training.framework.GradBucketElements(plan.dp), N(d.params.total())),
               d.grad_buckets});
  t.push_back({"buffers.pp_send_recv", "PP>1 ? 2 * VPP * e*B*S*H/SPd : 0",
               fmt::format("{} ? 2 * {} * {}*{}*{}/{} : 0", plan.pp > 1, plan.vpp, e, bs,
                           model.hidden, sp_div),
               d.pp_buffers});
  t.push_back({"buffers.sp_all_gather", "SP ? e*B*S*H : 0",
               fmt::format("{} ? {}*{}*{} : 0", sp_div > 1, e, bs, model.hidden), d.tp_buffers});
  t.push_back({"buffers.backward_scratch",
               plan.attention == AttentionImpl::kFused
                   ? "e*B*S*(QKV_r + max(H, q_r) + H + F/TP + F_pre/TP) + 4*B*S*(q_r + NH/TP), "
                     "one layer (fused attention: fp32 dQ accumulator and row sums)"
                   : "e * (B*S*(2*QKV_r + q_r + max(H, q_r) + H + F/TP + F_pre/TP) + "
                     "B*NH/TP*S*S), one layer",
               fmt::format("{} bytes of one layer's activation-gradient temporaries", N(d.backward_scratch)),
               d.backward_scratch});

  const RuntimeMemory& rt = cluster.gpu.runtime;
  t.push_back({"runtime.cuda_context", "CUDA context + cuBLAS workspace", N(rt.cuda_context_bytes),
               d.cuda_context});
  t.push_back({"runtime.nccl",
               "c > 0 ? nccl_first + (c - 1) * nccl_per_comm + (PP>1 ? nccl_p2p : 0) : 0, "
               "c = communicators (world, TP, DP, PP, embedding group)",
               fmt::format("c = {}: {} + {} * {} + {}", d.communicators,
                           N(rt.nccl_first_comm_bytes > 0 ? rt.nccl_first_comm_bytes
                                                          : rt.nccl_per_comm_bytes),
                           std::max(0, d.communicators - 1), N(rt.nccl_per_comm_bytes),
                           N(rt.nccl_p2p_bytes)),
               d.nccl});
  t.push_back({"runtime.allocator", "allocator_fraction * (activations + buffers)",
               fmt::format("{} * ({} + {})", rt.allocator_fraction, N(d.memory.activations),
                           N(d.memory.buffers)),
               d.allocator});
  return t;
}

std::vector<MemoryTerm> ExplainHostMemory(const ModelSpec& model, const TrainingSpec& training,
                                          const ClusterSpec& cluster, const Plan& plan, int stage) {
  std::vector<MemoryTerm> t;
  if (plan.offload == Offload::kNone) return t;
  const StageMemoryDetail d = StageMemoryDetails(model, training, cluster, plan, stage);
  const Precision& p = training.precision;
  const std::string shard = fmt::format("{} / {}", N(d.params.total()), plan.dp);
  auto add = [&](const char* name, const char* what, int bytes, double value) {
    t.push_back({name, fmt::format("{} * P_r / DP", what), fmt::format("{} * {}", bytes, shard), value});
  };
  add("host.master", "master_bytes", p.master_bytes, d.host.master);
  add("host.optimizer", "adam_bytes", p.optimizer_bytes, d.host.optimizer);
  add("host.gradients", "grad_bytes (pinned)", p.grad_bytes, d.host.gradients);
  add("host.params", "param_bytes (pinned)", p.param_bytes, d.host.params);
  t.push_back({"host.runtime", "driver, runtime, data loading per GPU process (assumed)",
               N(kHostRuntimePerGpuBytes), d.host.runtime});
  const double node = HostBytesPerNode(model, training, cluster, plan);
  t.push_back({"host.node", "GPUs per node * max over stages of the host total per GPU",
               fmt::format("{} * {} vs host memory {}", GpusOnNode(cluster),
                           N(node / GpusOnNode(cluster)), N(cluster.node.host_memory_bytes)),
               node});
  return t;
}

}  // namespace p3d
