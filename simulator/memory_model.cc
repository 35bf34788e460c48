// Memory model arithmetic (derivations: docs/memory-model.md). The per-term
// functions here are shared by EstimateMemory, PeakStageMemory and
// ExplainMemory (memory_explain.cc), so the three can never disagree.
#include "simulator/memory_model.h"

#include <algorithm>

#include "simulator/memory_terms.h"

namespace p3d {

ScheduleKind ScheduleOf(const Plan& plan) {
  return plan.vpp > 1 ? ScheduleKind::kInterleaved1F1B : ScheduleKind::k1F1B;
}

int64_t LayersOnStage(int64_t layers, int pp, int stage) {
  return layers / pp + (stage < layers % pp ? 1 : 0);
}

double InFlightMicroBatches(ScheduleKind kind, int pp, int vpp, int64_t m, int stage) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return static_cast<double>(m);
    case ScheduleKind::k1F1B:
      return static_cast<double>(std::min<int64_t>(m, pp - stage));
    case ScheduleKind::kInterleaved1F1B: {
      // Megatron's warm-up forwards of (micro-batch, chunk) pairs, plus the
      // one in steady state; each pair holds 1/VPP of the stage's layers.
      // With m == PP every rank runs all forwards first (Megatron's
      // all_warmup_microbatches; schedule.h builds the same list).
      if (m == pp) return static_cast<double>(m);
      int64_t chunks = int64_t{vpp - 1} * pp + 2 * int64_t{pp - stage - 1} + 1;
      return static_cast<double>(std::min<int64_t>(m * vpp, chunks)) / vpp;
    }
  }
  return static_cast<double>(m);
}

double LayerParamsPerGpu(const ModelSpec& model, int tp) {
  const double h = static_cast<double>(model.hidden);
  const double f = static_cast<double>(model.ffn);
  const double kvd = memory_internal::KvDimPerRank(model, tp);
  // q and o: H x H / TP; k and v: H x KVD_r (column-parallel).
  double attention = 2 * h * h / tp + 2 * h * kvd;
  // Column-parallel biases (q, k, v) are split; the row-parallel o bias is replicated.
  if (model.arch == Arch::kGpt2)
    attention += h / tp + 2 * kvd + h;
  else if (model.qkv_bias)
    attention += h / tp + 2 * kvd;
  const double e = static_cast<double>(model.experts);
  double mlp = 0;
  if (model.arch == Arch::kGpt2)
    mlp = e * (2 * h * f / tp + f / tp + h);  // fc + proj; proj bias replicated
  else
    mlp = e * 3 * h * f / tp;           // gate, up, down
  if (model.experts > 1) mlp += h * e;  // router, replicated
  return attention + mlp + static_cast<double>(model.NormParamsPerLayer());
}

namespace {

// ParamsOnStage with the per-layer count already known.
StageParams ParamsOnStageWith(const ModelSpec& model, const Plan& plan, int stage,
                              double layer_params) {
  StageParams p;
  const double word_table = static_cast<double>(model.vocab) * model.hidden / plan.tp;
  p.layers = LayersOnStage(model.layers, plan.pp, stage) * layer_params;
  if (stage == 0) {
    p.embedding = word_table;
    if (model.arch == Arch::kGpt2)
      p.embedding += static_cast<double>(model.max_positions) * model.hidden;
  }
  if (stage == plan.pp - 1) {
    p.final_norm = static_cast<double>(model.FinalNormParams());
    // Untied: the head. Tied with PP > 1: Megatron keeps a copy of the word
    // embedding on the last stage and all-reduces its gradient with stage 0.
    if (!model.tie_embeddings || plan.pp > 1) p.head = word_table;
  }
  return p;
}

// What every stage of one plan shares; computed once per plan.
struct PlanShared {
  memory_internal::LayerActivations act;
  double layer_params;
  double loss_per_micro_batch;
  PlanShared(const ModelSpec& model, const TrainingSpec& training, const Plan& plan)
      : act(memory_internal::LayerActivations::Of(model, training, plan)),
        layer_params(LayerParamsPerGpu(model, plan.tp)),
        loss_per_micro_batch(memory_internal::LossBytesPerMicroBatch(model, training, plan)) {}
};

StageMemoryDetail StageDetail(const PlanShared& shared, const ModelSpec& model,
                              const TrainingSpec& training, const ClusterSpec& cluster,
                              const Plan& plan, int stage);

}  // namespace

StageParams ParamsOnStage(const ModelSpec& model, const Plan& plan, int stage) {
  return ParamsOnStageWith(model, plan, stage, LayerParamsPerGpu(model, plan.tp));
}

double ActivationBytesPerLayer(const ModelSpec& model, const TrainingSpec& training,
                               const Plan& plan) {
  return memory_internal::LayerActivations::Of(model, training, plan).Stored(plan.recompute);
}

double BackwardScratchBytes(const ModelSpec& model, const TrainingSpec& training, const Plan& plan) {
  const double tokens = static_cast<double>(plan.micro_batch) * training.seq;  // T = B*S
  const double hd = static_cast<double>(model.head_dim());
  const double heads = static_cast<double>(model.heads) / plan.tp;
  const double q = heads * hd;
  const double kv = std::max(1.0, static_cast<double>(model.kv_heads) / plan.tp) * hd;
  const double qkv = q + 2 * kv;
  const double f = static_cast<double>(model.ffn) / plan.tp;
  const double f_pre = model.arch == Arch::kLlama ? 2 * f : f;  // SwiGLU's gate and up
  const double h = static_cast<double>(model.hidden);
  const double e = training.precision.activation_bytes;
  if (plan.attention == AttentionImpl::kFused) {
    // dqkv, branch, d residual, MLP gradients; the fused core's workspace:
    // fp32 dQ accumulator [T, NH/TP*HD] and fp32 D [B, NH/TP, S]
    // (FusedAttention::BackwardScratchBytes; the engines' own is ~0).
    return e * tokens * (qkv + std::max(h, q) + h + f + f_pre) + 4 * tokens * (q + heads);
  }
  const double scores = static_cast<double>(plan.micro_batch) * heads * training.seq * training.seq;
  return e * (tokens * (2 * qkv + q + std::max(h, q) + h + f + f_pre) + scores);
}

namespace {

StageMemoryDetail StageDetail(const PlanShared& shared, const ModelSpec& model,
                              const TrainingSpec& training, const ClusterSpec& cluster,
                              const Plan& plan, int stage) {
  const Precision& prec = training.precision;
  const memory_internal::LayerActivations& act = shared.act;
  const bool first = stage == 0;
  const bool last = stage == plan.pp - 1;
  const bool sp = plan.sequence_parallel && plan.tp > 1;
  const double tokens = static_cast<double>(plan.micro_batch) * training.seq;  // B*S
  const double e = prec.activation_bytes;
  const double sp_div = sp ? plan.tp : 1;
  const ScheduleKind schedule = ScheduleOf(plan);

  StageMemoryDetail d;
  d.stage = stage;
  d.layers = LayersOnStage(model.layers, plan.pp, stage);
  d.params = ParamsOnStageWith(model, plan, stage, shared.layer_params);
  d.in_flight = InFlightMicroBatches(schedule, plan.pp, plan.vpp, plan.grad_accum, stage);

  // Model states, sharded over DP by the ZeRO stage. Offload moves the
  // optimizer states, the ZeRO-2/3 gradient shard (ZeRO-1 still accumulates
  // the full gradient on the GPU) and with parameter offload the ZeRO-3
  // weight shard to the host.
  const double n = d.params.total();
  const bool offload = plan.offload != Offload::kNone;
  const bool params_offload = plan.offload == Offload::kOptimizerAndParams;
  MemoryBreakdown& mem = d.memory;
  const Framework& fw = training.framework;
  // With master_is_param (FSDP2) the fp32 copy the optimizer steps on is the
  // parameter; no param_bytes copy is stored.
  mem.weights = params_offload || fw.master_is_param ? 0 : prec.param_bytes * n / (plan.zero >= 3 ? plan.dp : 1);
  mem.gradients = offload && plan.zero >= 2 ? 0 : prec.grad_bytes * n / (plan.zero >= 2 ? plan.dp : 1);
  mem.optimizer =
      offload ? 0 : (prec.master_bytes + prec.optimizer_bytes) * n / (plan.zero >= 1 ? plan.dp : 1);
  if (offload) {
    const double shard = n / plan.dp;
    d.host.master = prec.master_bytes * shard;
    d.host.optimizer = prec.optimizer_bytes * shard;
    d.host.gradients = prec.grad_bytes * shard;
    d.host.params = prec.param_bytes * shard;
    d.host.runtime = kHostRuntimePerGpuBytes;
  }

  // Activations.
  d.layer_activations = act.Stored(plan.recompute) * d.layers * d.in_flight;
  d.recompute_working = act.RecomputeWorkingSet(plan.recompute);
  if (first && training.dropout)
    d.embedding_activations = tokens * model.hidden / sp_div * d.in_flight;
  if (last) {
    const double loss_micro_batches =
        schedule == ScheduleKind::kGPipe ? static_cast<double>(plan.grad_accum) : 1.0;
    d.loss_activations = loss_micro_batches * shared.loss_per_micro_batch;
  }
  mem.activations =
      d.layer_activations + d.recompute_working + d.embedding_activations + d.loss_activations;

  // Buffers.
  if (plan.zero >= 3 && (plan.dp > 1 || params_offload)) {
    const double largest = std::max({shared.layer_params, d.params.embedding, d.params.head});
    // Without resharding after forward the stage's gathered parameters stay
    // until its backward (Framework::Reshards).
    d.zero3_gather = prec.param_bytes * (fw.Reshards(plan.pp) ? kZero3PrefetchModules * largest : n);
  }
  // With offload under ZeRO-2/3 the buckets also stage each micro-batch's
  // gradient for its copy to the host, even at DP = 1. A contiguous gradient
  // buffer (Megatron's DDP) is reduced in place: no ZeRO-0/1 buckets.
  if ((plan.dp > 1 || (offload && plan.zero >= 2)) && !(fw.contiguous_grad_buffer && plan.zero <= 1))
    d.grad_buckets = prec.grad_bytes * std::min(kGradBuckets * fw.GradBucketElements(plan.dp), n);
  if (plan.pp > 1) d.pp_buffers = 2.0 * plan.vpp * e * tokens * model.hidden / sp_div;
  // SP's all-gather buffer, or the userbuffers the TP overlap registers.
  if (sp) d.tp_buffers = e * tokens * model.hidden * (fw.tp_overlap == TpOverlap::kUserBuffers ? fw.tp_overlap_buffers : 1);
  d.backward_scratch = BackwardScratchBytes(model, training, plan);
  mem.buffers = d.zero3_gather + d.grad_buckets + d.pp_buffers + d.tp_buffers + d.backward_scratch;

  // Runtime.
  const RuntimeMemory& rt = cluster.gpu.runtime;
  d.communicators = memory_internal::Communicators(model, plan, stage);
  d.cuda_context = rt.cuda_context_bytes;
  d.nccl = NcclBytes(rt, d.communicators, plan.pp > 1);
  d.allocator = rt.allocator_fraction * (mem.activations + mem.buffers);
  mem.runtime = d.cuda_context + d.nccl + d.allocator;
  return d;
}

}  // namespace

StageMemoryDetail StageMemoryDetails(const ModelSpec& model, const TrainingSpec& training,
                                     const ClusterSpec& cluster, const Plan& plan, int stage) {
  return StageDetail(PlanShared(model, training, plan), model, training, cluster, plan, stage);
}

MemoryEstimate EstimateMemory(const ModelSpec& model, const TrainingSpec& training,
                              const ClusterSpec& cluster, const Plan& plan) {
  const PlanShared shared(model, training, plan);
  MemoryEstimate est;
  est.stages.reserve(plan.pp);
  for (int r = 0; r < plan.pp; ++r) {
    StageMemoryDetail d = StageDetail(shared, model, training, cluster, plan, r);
    est.stages.push_back({r, d.layers, d.memory, d.host.total()});
    if (d.memory.total() > est.stages[est.peak_stage].memory.total()) est.peak_stage = r;
    est.host_bytes_per_node = std::max(est.host_bytes_per_node, GpusOnNode(cluster) * d.host.total());
  }
  return est;
}

int GpusOnNode(const ClusterSpec& cluster) {
  const int n = cluster.num_gpus > 0 ? std::min(cluster.node.gpus_per_node, cluster.num_gpus)
                                     : cluster.node.gpus_per_node;
  return std::max(1, n);
}

double HostBytesPerNode(const ModelSpec& model, const TrainingSpec& training,
                        const ClusterSpec& cluster, const Plan& plan) {
  if (plan.offload == Offload::kNone) return 0;
  // Host bytes grow with the stage's parameters, largest on stage 0
  // (embedding) or the last stage (head), as for PeakStageMemory.
  const PlanShared shared(model, training, plan);
  double host = StageDetail(shared, model, training, cluster, plan, 0).host.total();
  if (plan.pp > 1)
    host = std::max(host, StageDetail(shared, model, training, cluster, plan, plan.pp - 1).host.total());
  return GpusOnNode(cluster) * host;
}

MemoryBreakdown PeakStageMemory(const ModelSpec& model, const TrainingSpec& training,
                                const ClusterSpec& cluster, const Plan& plan, int* peak_stage) {
  // Stage 0 holds at least as many layers and in-flight micro-batches as any
  // middle stage, plus the embedding, and every other term is stage-independent,
  // so only stage 0 and the last stage (head, loss) can be the peak.
  const PlanShared shared(model, training, plan);
  MemoryBreakdown first = StageDetail(shared, model, training, cluster, plan, 0).memory;
  int stage = 0;
  if (plan.pp > 1) {
    MemoryBreakdown last = StageDetail(shared, model, training, cluster, plan, plan.pp - 1).memory;
    if (last.total() > first.total()) {
      first = last;
      stage = plan.pp - 1;
    }
  }
  if (peak_stage != nullptr) *peak_stage = stage;
  return first;
}

}  // namespace p3d
