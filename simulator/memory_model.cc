// Memory model arithmetic (derivations: docs/memory-model.md). One function,
// StageDetail, computes every term; EstimateMemory, PeakStageMemory and
// ExplainMemory all call it (ExplainMemory with a Derivation that records each
// term's formula and inputs where it is computed), so they can never disagree.
#include "simulator/memory_model.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "simulator/compute_model.h"
#include "simulator/memory_terms.h"
#include "simulator/recent_values.h"
#include "simulator/stage_kinds.h"

namespace p3d {

ScheduleKind ScheduleOf(const Plan& plan) {
  return plan.vpp > 1 ? ScheduleKind::kInterleaved1F1B : ScheduleKind::k1F1B;
}

double InFlightMicroBatches(ScheduleKind kind, int pp, int vpp, int64_t m, int stage,
                            const char** formula) {
  const char* unused;
  const char*& f = formula != nullptr ? *formula : unused;
  switch (kind) {
    case ScheduleKind::kGPipe:
      f = "m";
      return static_cast<double>(m);
    case ScheduleKind::k1F1B:
      f = "min(m, PP - r)";
      return static_cast<double>(std::min<int64_t>(m, pp - stage));
    case ScheduleKind::kInterleaved1F1B: {
      // Megatron's warm-up forwards of (micro-batch, chunk) pairs, plus the
      // one in steady state; each pair holds 1/VPP of the stage's layers.
      // With m == PP every rank runs all forwards first (Megatron's
      // all_warmup_microbatches; schedule.h builds the same list).
      f = "m";
      if (m == pp) return static_cast<double>(m);
      f = "min(m*VPP, (VPP - 1)*PP + 2*(PP - r - 1) + 1)/VPP";
      int64_t chunks = int64_t{vpp - 1} * pp + 2 * int64_t{pp - stage - 1} + 1;
      return static_cast<double>(std::min<int64_t>(m * vpp, chunks)) / vpp;
    }
  }
  f = "m";
  return static_cast<double>(m);
}

double AttentionParamsPerGpu(const ModelSpec& model, int tp) {
  const double h = static_cast<double>(model.hidden), nh = static_cast<double>(model.heads);
  const double sinks = model.attention_sinks ? nh / tp : 0;  // split with the heads
  if (model.mla()) {
    // Megatron-Core's MLA: the down projections (and their norms) are
    // replicated over TP ("duplicated" linears), the up projections
    // column-parallel, o row-parallel.
    const double ql = static_cast<double>(model.q_lora_rank), kl = static_cast<double>(model.kv_lora_rank);
    const double q = static_cast<double>(model.q_dim());
    const double q_params = ql > 0 ? h * ql + ql + ql * q / tp : h * q / tp;
    const double kv_params = h * (kl + static_cast<double>(model.qk_rope_head_dim)) + kl +
                             kl * nh * static_cast<double>(model.qk_nope_head_dim + model.v_head_dim) / tp;
    return q_params + kv_params + static_cast<double>(model.attn_out_dim()) * h / tp + sinks;
  }
  const double q = static_cast<double>(model.q_dim());
  const double kvd = memory_internal::KvDimPerRank(model, tp);
  // q: H x q/TP, o: q/TP x H; k and v: H x KVD_r (column-parallel).
  double attention = 2 * h * q / tp + 2 * h * kvd;
  // Column-parallel biases (q, k, v) are split; the row-parallel o bias is replicated.
  if (model.arch == Arch::kGpt2 || model.attention_bias)
    attention += q / tp + 2 * kvd + h;
  else if (model.qkv_bias)
    attention += q / tp + 2 * kvd;
  if (model.qk_norm) attention += 2 * static_cast<double>(model.head_dim());  // replicated
  return attention + sinks;
}

namespace {
// One FFN of width f, TP-split: fc/gate/up column-parallel, proj/down
// row-parallel (its bias replicated).
double FfnParamsPerGpu(const ModelSpec& model, double f, bool bias, int tp) {
  const double h = static_cast<double>(model.hidden);
  if (model.arch == Arch::kGpt2) return 2 * h * f / tp + f / tp + h;
  return 3 * h * f / tp + (bias ? 2 * f / tp + h : 0);
}
}  // namespace

double RoutedExpertParamsPerGpu(const ModelSpec& model, const LayerKind& kind, int etp, int ep) {
  if (!kind.moe) return 0;
  return static_cast<double>(model.experts) / ep *
         FfnParamsPerGpu(model, static_cast<double>(model.expert_ffn()), model.expert_bias, etp);
}

double LayerParamsPerGpu(const ModelSpec& model, const LayerKind& kind, int tp, int ep, int etp) {
  double mlp = 0;
  if (kind.moe) {
    // Shared experts are replicated over EP like the dense weights (MCore's
    // SharedExpertMLP is TP-split only); the router is replicated.
    mlp = RoutedExpertParamsPerGpu(model, kind, etp > 0 ? etp : tp, ep) +
          static_cast<double>(model.shared_experts) *
              FfnParamsPerGpu(model, static_cast<double>(model.expert_ffn()), model.expert_bias, tp) +
          static_cast<double>(model.RouterParams());
  } else {
    mlp = FfnParamsPerGpu(model, static_cast<double>(model.ffn), false, tp);
  }
  return AttentionParamsPerGpu(model, tp) + mlp + static_cast<double>(model.NormParamsPerLayer());
}

double StageLayerParams(const ModelSpec& model, const LayerKindCounts& kinds, int tp, int ep, int etp) {
  double total = 0;
  for (int k = 0; k < kLayerKinds; ++k)
    if (kinds.count[k] > 0)
      total += static_cast<double>(kinds.count[k]) * LayerParamsPerGpu(model, LayerKind::FromIndex(k), tp, ep, etp);
  return total;
}

double LinearWeightsPerLayer(const ModelSpec& model, const LayerKind& kind, int tp, int ep, int etp) {
  const double h = static_cast<double>(model.hidden);
  double attention;
  if (model.mla()) {
    // AttentionParamsPerGpu's MLA linears without their norms.
    const double ql = static_cast<double>(model.q_lora_rank), kl = static_cast<double>(model.kv_lora_rank);
    const double q = static_cast<double>(model.q_dim()), nh = static_cast<double>(model.heads);
    attention = (ql > 0 ? h * ql + ql * q / tp : h * q / tp) +
                h * (kl + static_cast<double>(model.qk_rope_head_dim)) +
                kl * nh * static_cast<double>(model.qk_nope_head_dim + model.v_head_dim) / tp;
  } else {
    // q: H x q/TP, k and v: H x KVD_r (column-parallel).
    attention = h * static_cast<double>(model.q_dim()) / tp + 2 * h * memory_internal::KvDimPerRank(model, tp);
  }
  attention += static_cast<double>(model.attn_out_dim()) * h / tp;  // o (row-parallel)
  // MLP: fc + proj (GPT) or gate, up, down (Llama) per FFN; a MoE layer's
  // routed and shared experts (not the router).
  const double matrices = model.arch == Arch::kGpt2 ? 2 : 3;
  const double per_ffn = matrices * h / tp, per_expert = matrices * h / (etp > 0 ? etp : tp);
  const double mlp = kind.moe ? (static_cast<double>(model.experts) / ep * per_expert +
                                 static_cast<double>(model.shared_experts) * per_ffn) *
                                    static_cast<double>(model.expert_ffn())
                              : per_ffn * static_cast<double>(model.ffn);
  return attention + mlp;
}

double StageLinearWeights(const ModelSpec& model, const LayerKindCounts& kinds, int tp, int ep, int etp) {
  double total = 0;
  for (int k = 0; k < kLayerKinds; ++k)
    if (kinds.count[k] > 0)
      total += static_cast<double>(kinds.count[k]) * LinearWeightsPerLayer(model, LayerKind::FromIndex(k), tp, ep, etp);
  return total;
}

double StageExpertParams(const ModelSpec& model, const LayerKindCounts& kinds, int etp, int ep) {
  double total = 0;
  for (int k = 0; k < kLayerKinds; ++k)
    if (kinds.count[k] > 0)
      total += static_cast<double>(kinds.count[k]) * RoutedExpertParamsPerGpu(model, LayerKind::FromIndex(k), etp, ep);
  return total;
}

namespace {

// ParamsOnStage with the per-kind layer counts already known.
StageParams ParamsOnStageWith(const ModelSpec& model, const Plan& plan, int stage,
                              const LayerKindCounts& kinds) {
  StageParams p;
  const double word_table = static_cast<double>(model.vocab) * model.hidden / plan.tp;
  p.layers = StageLayerParams(model, kinds, plan.tp, plan.ep, plan.expert_tp());
  p.experts = StageExpertParams(model, kinds, plan.expert_tp(), plan.ep);
  if (stage == 0) {
    p.embedding = word_table;
    if (model.learned_positions())
      p.embedding += static_cast<double>(model.max_positions) * model.hidden;
    if (model.embedding_norm) p.embedding += static_cast<double>(model.NormParams());
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
// Per FFN kind (0: dense, 1: MoE) where the model has it; `why` records the
// activation groups of the model's MoE layers (of its dense ones for a dense model).
// It depends on the plan's TP, CP, micro-batch, SP, attention, EP and ETP
// only (SharedKey), so PeakMemoryCache keeps it across plans.
struct PlanShared {
  memory_internal::LayerActivations act[2];
  double layer_params[2] = {0, 0};  // one layer on one TP rank (window kinds hold the same)
  double loss_per_micro_batch = 0;
  // Every stage's BackwardScratchBytes and CpRingBytes (recorded by the
  // stage's Buffers where `why` is set, in the order --explain lists them).
  double backward_scratch = 0, cp_ring = 0;
  PlanShared() = default;
  PlanShared(const ModelSpec& model, const TrainingSpec& training, const Plan& plan,
             Derivation* why = nullptr)
      : loss_per_micro_batch(memory_internal::LossBytesPerMicroBatch(model, training, plan)),
        backward_scratch(BackwardScratchBytes(model, training, plan)),
        cp_ring(CpRingBytes(model, training, plan)) {
    for (int moe = 0; moe < 2; ++moe) {
      if (moe == 1 ? !model.moe() : model.dense_layers == 0 && model.moe()) continue;
      const bool main = moe == (model.moe() ? 1 : 0);
      act[moe] = memory_internal::LayerActivations::Of(model, moe == 1, training, plan, main ? why : nullptr);
      layer_params[moe] = LayerParamsPerGpu(model, LayerKind{moe == 1, false}, plan.tp, plan.ep, plan.expert_tp());
    }
  }
  // The largest layer (ZeRO-3's gather buffer holds two).
  double LargestLayer() const { return std::max(layer_params[0], layer_params[1]); }
};

// Layers of a stage by FFN kind: [0] dense, [1] MoE.
struct FfnCounts {
  double n[2] = {0, 0};
  explicit FfnCounts(const LayerKindCounts& k) {
    for (int i = 0; i < kLayerKinds; ++i) n[LayerKind::FromIndex(i).moe ? 1 : 0] += static_cast<double>(k.count[i]);
  }
};

// What a stage holds: its layers, by kind, and their parameters. It depends
// on the plan's TP, PP, VPP, pipeline split, EP and ETP only (LayoutKey), so
// PeakMemoryCache keeps it across plans.
struct StageShape {
  int stage = 0;
  int64_t layers = 0;
  LayerKindCounts kinds;
  StageParams params;
  StageShape() = default;
  StageShape(const ModelSpec& model, const Plan& plan, int r)
      : stage(r), layers(StageLayers(plan, model.layers, r)), kinds(StageKinds(model, plan, r)),
        params(ParamsOnStageWith(model, plan, r, kinds)) {}
};

StageMemoryDetail StageDetail(const PlanShared& shared, const StageShape& shape, const ModelSpec& model,
                              const TrainingSpec& training, const ClusterSpec& cluster,
                              const Plan& plan, Derivation* why = nullptr);

}  // namespace

StageParams ParamsOnStage(const ModelSpec& model, const Plan& plan, int stage) {
  return ParamsOnStageWith(model, plan, stage, StageKinds(model, plan, stage));
}

double ActivationBytesPerLayer(const ModelSpec& model, const LayerKind& kind,
                               const TrainingSpec& training, const Plan& plan) {
  return memory_internal::LayerActivations::Of(model, kind.moe, training, plan).Stored(plan.recompute);
}

double BackwardScratchBytes(const ModelSpec& model, const TrainingSpec& training, const Plan& plan,
                            Derivation* why) {
  const double T = MicroBatchTokens(plan, training);  // B*S
  const double NH_r = static_cast<double>(model.heads) / plan.tp;
  const memory_internal::AttentionWidths w = memory_internal::AttentionWidths::Of(model, plan.tp);
  const double q_r = w.q;
  const double QKV_r = w.q + w.k + w.v;
  // The widest FFN gradient per token: the dense FFN's, or an MoE layer's k
  // routed + s shared expert intermediates.
  const double dense_f = model.moe() && model.dense_layers == 0 ? 0 : static_cast<double>(model.ffn);
  const double moe_f = model.moe() ? static_cast<double>((model.experts_per_token + model.shared_experts) *
                                                         model.expert_ffn())
                                   : 0;
  const double F_r = std::max(dense_f, moe_f) / plan.tp;
  const double Fpre_r = model.arch == Arch::kLlama ? 2 * F_r : F_r;  // SwiGLU's gate and up
  const double H = static_cast<double>(model.hidden);
  const double e = training.precision.activation_bytes;
  if (plan.attention == AttentionImpl::kFused) {
    // dqkv, branch, d residual, MLP gradients; the fused core's workspace:
    // fp32 dQ accumulator [T, NH/TP*HD] and fp32 D [B, NH/TP, S]
    // (FusedAttention::BackwardScratchBytes; the engines' own is ~0).
    return P3D_PART(why, "buffers.backward_scratch",
                    "e*T*(QKV_r + max(H, q_r) + H + F_r + Fpre_r) + 4*T*(q_r + NH_r)",
                    e * T * (QKV_r + std::max(H, q_r) + H + F_r + Fpre_r) + 4 * T * (q_r + NH_r),
                    "one layer's activation gradients + the fused core's fp32 dQ and row sums",
                    {"e", e}, {"T", T}, {"QKV_r", QKV_r}, {"H", H}, {"q_r", q_r}, {"F_r", F_r},
                    {"Fpre_r", Fpre_r}, {"NH_r", NH_r});
  }
  const double B = static_cast<double>(plan.micro_batch), S = static_cast<double>(training.seq);
  return P3D_PART(
      why, "buffers.backward_scratch",
      "e*(T*(2*QKV_r + q_r + max(H, q_r) + H + F_r + Fpre_r) + B*NH_r*S*S)",
      e * (T * (2 * QKV_r + q_r + std::max(H, q_r) + H + F_r + Fpre_r) + B * NH_r * S * S),
      "one layer's activation gradients incl. the S x S score gradient", {"e", e}, {"T", T},
      {"QKV_r", QKV_r}, {"q_r", q_r}, {"H", H}, {"F_r", F_r}, {"Fpre_r", Fpre_r}, {"B", B},
      {"NH_r", NH_r}, {"S", S});
}

double CpRingBytes(const ModelSpec& model, const TrainingSpec& training, const Plan& plan,
                   Derivation* why) {
  if (plan.cp == 1) return P3D_PART(why, "buffers.cp_ring", "0", 0, "");
  // One layer's forward keeps every K/V chunk the ring delivered and every
  // step's partial output and fp32 log-sum-exp until it merges them
  // (TransformerEngine context_parallel.py AttnFuncWithCPAndKVP2P.forward:
  // p2p_comm_buffers, out_per_step, softmax_lse_per_step, cp_size entries
  // each); its backward holds two [2, K/V] buffers (K/V and dK/dV, in flight
  // and in use), fewer than the forward's CP >= 2 chunks.
  const double T = MicroBatchTokens(plan, training), CP = plan.cp;
  const double e = training.precision.activation_bytes;
  const double KVD_r = memory_internal::KvDimPerRank(model, plan.tp);
  const double NH_r = static_cast<double>(model.heads) / plan.tp;
  const double q_r = NH_r * static_cast<double>(model.head_dim());
  return P3D_PART(why, "buffers.cp_ring", "CP*T*(e*(2*KVD_r + q_r) + 4*NH_r)",
                  CP * T * (e * (2 * KVD_r + q_r) + 4 * NH_r),
                  "context parallel: the ring's K/V chunks and each step's partial output and "
                  "row log-sum-exp, one layer's forward",
                  {"CP", CP}, {"T", T}, {"e", e}, {"KVD_r", KVD_r}, {"q_r", q_r}, {"NH_r", NH_r});
}

namespace {

// optimizer.zero_grad(set_to_none=True) with one micro-batch per step
// (Framework::grads_set_to_none): no gradient exists while the forward's
// activations and the loss peak; the backward makes them as it frees the
// activations, so a stage holds the larger of the two (Gradients below).
bool GradientsAfterActivations(const Framework& fw, const Plan& plan) {
  return fw.grads_set_to_none && plan.grad_accum == 1 && plan.offload == Offload::kNone;
}

// Model states, sharded over DP by the ZeRO stage. Offload moves the
// optimizer states, the ZeRO-2/3 gradient shard (ZeRO-1 still accumulates the
// full gradient on the GPU) and with parameter offload the ZeRO-3 weight
// shard to the host. With Framework::master_is_param (FSDP2) the fp32 copy
// the optimizer steps on is the parameter: no param_bytes copy is stored.
// With EP > 1 the stage's routed experts P_e are sharded over the
// expert-data-parallel group (DP/EP ranks) and the rest over DP: the shard
// P_z = (P_r - P_e)/DP + P_e/EDP replaces P_r/DP ("params.zero_shard").
void ModelStates(const Precision& prec, const Framework& fw, const Plan& plan, double n,
                 double n_experts, StageMemoryDetail* d, Derivation* why) {
  const bool offload = plan.offload != Offload::kNone;
  const bool params_offload = plan.offload == Offload::kOptimizerAndParams;
  const double Z = plan.zero_shards(), pb = prec.param_bytes, gb = prec.grad_bytes;
  const bool ep1 = plan.ep == 1 && plan.expert_tp() == plan.tp;
  // The experts' shard group: the expert-data-parallel group, cut like the
  // dense one into replicas with hybrid sharding (Megatron-Core's intra-
  // instance expert-data-parallel group, parallel_state.py).
  const double EZ = static_cast<double>(plan.expert_dp()) / plan.zero_replicas();
  const double Pz = ep1 ? n / Z
                        : P3D_TERM(why, "params.zero_shard", "(P_r - P_e)/Z + P_e/EZ",
                                   (n - n_experts) / Z + n_experts / EZ,
                                   "the stage's ZeRO shard: dense weights over the DP x CP shard group, "
                                   "routed experts over the expert-DP shard group",
                                   {"P_r", n}, {"P_e", n_experts}, {"Z", Z}, {"EZ", EZ});
  const double mb = prec.master_bytes, ob = prec.optimizer_bytes;
  MemoryBreakdown& mem = d->memory;
  const char* off = "offloaded to the host";
  mem.weights = params_offload ? P3D_PART(why, "weights", "0", 0, off)
                : fw.master_is_param
                    ? P3D_PART(why, "weights", "0", 0, "the fp32 master is the parameter")
                : plan.zero >= 3 ? P3D_PART(why, "weights", ep1 ? "param_bytes*P_r/Z" : "param_bytes*P_z", pb * Pz, "",
                                            {"param_bytes", pb}, {"P_r", n}, {"Z", Z}, {"P_z", Pz})
                                 : P3D_PART(why, "weights", "param_bytes*P_r", pb * n, "",
                                            {"param_bytes", pb}, {"P_r", n});
  // Framework::param_grads_kept: the bf16 .grad tensors beside the fp32
  // buffer (DeepSpeed's BF16_Optimizer, ZeRO-0/1 without offload).
  const bool kept = fw.param_grads_kept && plan.zero <= 1 && !offload;
  // Recorded by Gradients instead when they come after the activations.
  Derivation* const why_grads = GradientsAfterActivations(fw, plan) ? nullptr : why;
  mem.gradients = offload && plan.zero >= 2 ? P3D_PART(why_grads, "gradients", "0", 0, off)
                  : plan.zero >= 2 ? P3D_PART(why_grads, "gradients", ep1 ? "grad_bytes*P_r/Z" : "grad_bytes*P_z", gb * Pz,
                                              "", {"grad_bytes", gb}, {"P_r", n}, {"Z", Z}, {"P_z", Pz})
                  : kept           ? P3D_PART(why_grads, "gradients", "(grad_bytes + param_bytes)*P_r",
                                              (gb + pb) * n, "fp32 buffer and the bf16 .grad kept beside it",
                                              {"grad_bytes", gb}, {"param_bytes", pb}, {"P_r", n})
                                   : P3D_PART(why_grads, "gradients", "grad_bytes*P_r", gb * n, "",
                                              {"grad_bytes", gb}, {"P_r", n});
  mem.optimizer =
      offload ? P3D_PART(why, "optimizer", "0", 0, off)
      : plan.zero >= 1
          ? P3D_PART(why, "optimizer", ep1 ? "(master_bytes + adam_bytes)*P_r/Z" : "(master_bytes + adam_bytes)*P_z", (mb + ob) * Pz, "",
                     {"master_bytes", mb}, {"adam_bytes", ob}, {"P_r", n}, {"Z", Z}, {"P_z", Pz})
          : P3D_PART(why, "optimizer", "(master_bytes + adam_bytes)*P_r", (mb + ob) * n, "",
                     {"master_bytes", mb}, {"adam_bytes", ob}, {"P_r", n});
  if (!offload) return;
  // Host memory of one GPU's process: its shard P_r/Z of each state (parts
  // of the host total, which ExplainHostMemory shows apart from the GPU's).
  d->host.master = P3D_PART(why, "host.master", ep1 ? "master_bytes*P_r/Z" : "master_bytes*P_z", mb * Pz, "",
                            {"master_bytes", mb}, {"P_r", n}, {"Z", Z}, {"P_z", Pz});
  d->host.optimizer = P3D_PART(why, "host.optimizer", ep1 ? "adam_bytes*P_r/Z" : "adam_bytes*P_z", ob * Pz, "",
                               {"adam_bytes", ob}, {"P_r", n}, {"Z", Z}, {"P_z", Pz});
  d->host.gradients = P3D_PART(why, "host.gradients", ep1 ? "grad_bytes*P_r/Z" : "grad_bytes*P_z", gb * Pz,
                               "pinned gradient shard", {"grad_bytes", gb}, {"P_r", n}, {"Z", Z}, {"P_z", Pz});
  d->host.params = P3D_PART(why, "host.params", ep1 ? "param_bytes*P_r/Z" : "param_bytes*P_z", pb * Pz,
                            "pinned bf16 parameters", {"param_bytes", pb}, {"P_r", n}, {"Z", Z}, {"P_z", Pz});
  d->host.runtime = P3D_PART(why, "host.runtime", "runtime", kHostRuntimePerGpuBytes,
                             "driver, runtime, data loading per GPU process (assumed)",
                             {"runtime", kHostRuntimePerGpuBytes});
}

// FP8 (docs/memory-model.md "FP8"): Transformer Engine keeps the FP8 copies
// of the linear weights from one step to the next (its weight workspaces:
// `copies` of 1 + scale bytes per weight, Fp8Copies), and scaling state per
// quantized operand of each linear GEMM (input, weight, output gradient: 3
// tensors; an fp32 amax history under delayed scaling). ZeRO-3 casts the
// gathered weights of the module computing, so no copy persists: 0.
void Fp8Weights(const ModelSpec& model, const TrainingSpec& training, const GpuSpec& gpu,
                const Plan& plan, StageMemoryDetail* d, Derivation* why) {
  const double W = StageLinearWeights(model, d->kinds, plan.tp, plan.ep, plan.expert_tp());
  const double copies = Fp8Copies(gpu, training.fp8), s = Fp8WeightScaleBytes(training.fp8);
  // FP8 primary weights (Framework::fp8_param_gather): the linear weights'
  // bf16 copy is not kept (primary = 1 takes param_bytes*W back off).
  const double primary = training.framework.Fp8PrimaryWeights(training.fp8) ? 1 : 0;
  const double pb = training.precision.param_bytes;
  const double fp8_weights =
      plan.zero >= 3
          ? P3D_PART(why, "weights.fp8_copies", "0", 0, "ZeRO-3: cast per gathered module")
          : P3D_PART(why, "weights.fp8_copies", "(copies*(1 + s) - primary*param_bytes)*W",
                     (copies * (1 + s) - primary * pb) * W,
                     "FP8 weight copies (Hopper: and the transposed one) TE keeps; with FP8 primary "
                     "weights no bf16 copy of them",
                     {"copies", copies}, {"s", s}, {"primary", primary}, {"param_bytes", pb}, {"W", W});
  const double L_r = static_cast<double>(d->layers), per_tensor = Fp8ScalarBytesPerTensor(training.fp8);
  const double scaling =
      P3D_PART(why, "weights.fp8_scaling", "L_r*gemms*3*per_tensor", L_r * 4 * 3 * per_tensor,
               "amax history / scale / scale_inv per quantized operand", {"L_r", L_r}, {"gemms", 4.0},
               {"per_tensor", per_tensor});
  d->memory.weights += fp8_weights + scaling;
}

void Activations(const PlanShared& shared, const ModelSpec& model, const TrainingSpec& training,
                 const Plan& plan, int stage, StageMemoryDetail* d, Derivation* why) {
  const double e = training.precision.activation_bytes;
  const double T = MicroBatchTokens(plan, training), H = static_cast<double>(model.hidden);
  const double SPd = plan.sequence_shards(), L_r = static_cast<double>(d->layers);
  const double m_r = d->in_flight;
  // A stage of one FFN kind uses that kind's groups; a stage mixing dense and
  // MoE layers (DeepSeek's first stage) the layer-weighted mean of the two.
  const FfnCounts ffn(d->kinds);
  const bool mixed = ffn.n[0] > 0 && ffn.n[1] > 0;
  const memory_internal::LayerActivations& act = shared.act[ffn.n[1] > 0 ? 1 : 0];
  const double per_layer =
      mixed ? P3D_TERM(why, "activations.per_layer", "(L_dense*A_dense + L_moe*A_moe)/L_r",
                       (ffn.n[0] * shared.act[0].Stored(plan.recompute) +
                        ffn.n[1] * shared.act[1].Stored(plan.recompute)) / L_r,
                       "mean over the stage's dense and MoE layers, one micro-batch",
                       {"L_dense", ffn.n[0]}, {"A_dense", shared.act[0].Stored(plan.recompute)},
                       {"L_moe", ffn.n[1]}, {"A_moe", shared.act[1].Stored(plan.recompute)}, {"L_r", L_r})
            : P3D_TERM(why, "activations.per_layer", act.StoredFormula(plan.recompute),
                       act.Stored(plan.recompute), "stored by one layer for one micro-batch",
                       {"hidden", act.hidden}, {"masks", act.masks}, {"split", act.split},
                       {"scores", act.scores}, {"input", act.input}, {"op_level", act.op_level},
                       {"fp8", act.fp8});
  d->layer_activations =
      P3D_PART(why, "activations.layers", "A_layer*L_r*m_r", per_layer * L_r * m_r, "",
               {"A_layer", per_layer}, {"L_r", L_r}, {"m_r", m_r});
  d->recompute_working = P3D_PART(
      why, "activations.recompute_working_set", act.RecomputeWorkingSetFormula(plan.recompute),
      act.RecomputeWorkingSet(plan.recompute), "one layer's recomputed tensors",
      {"hidden", act.hidden}, {"masks", act.masks}, {"split", act.split}, {"scores", act.scores},
      {"input", act.input}, {"op_level", act.op_level}, {"fp8", act.fp8});
  // The embedding's dropout mask (1 byte) and the embedding norm's input (e bytes).
  const double drop = training.dropout ? 1 : 0, norm = model.embedding_norm ? 1 : 0;
  d->embedding_activations =
      stage == 0 && drop + norm > 0
          ? P3D_PART(why, "activations.embedding", "(drop + norm*e)*T*H/SPd*m_r",
                     (drop + norm * e) * T * H / SPd * m_r,
                     "embedding dropout mask, embedding-norm input", {"drop", drop}, {"norm", norm},
                     {"e", e}, {"T", T}, {"H", H}, {"SPd", SPd}, {"m_r", m_r})
          : P3D_PART(why, "activations.embedding", "0", 0, "");
  if (stage == plan.pp - 1) {
    const double m_loss =
        ScheduleOf(plan) == ScheduleKind::kGPipe ? static_cast<double>(plan.grad_accum) : 1.0;
    const double T_c = memory_internal::LogitTokens(training, plan);
    const double V = static_cast<double>(model.vocab), TP = plan.tp;
    const double f32 = memory_internal::LossFp32Bytes(training);
    d->loss_activations =
        P3D_PART(why, "activations.loss", "m_loss*(2*e*T*H/SPd + T_c*V/TP*(e + f32))",
                 m_loss * shared.loss_per_micro_batch,
                 "final-norm and head inputs, bf16 logits and the fp32 tensors of a loss chunk",
                 {"m_loss", m_loss}, {"e", e}, {"T", T}, {"H", H}, {"SPd", SPd}, {"T_c", T_c},
                 {"V", V}, {"TP", TP}, {"f32", f32});
  } else {
    d->loss_activations = P3D_PART(why, "activations.loss", "0", 0, "");
  }
  d->memory.activations =
      d->layer_activations + d->recompute_working + d->embedding_activations + d->loss_activations;
}

void Buffers(const PlanShared& shared, const ModelSpec& model, const TrainingSpec& training,
             const Plan& plan, StageMemoryDetail* d, Derivation* why) {
  const Precision& prec = training.precision;
  const Framework& fw = training.framework;
  const bool offload = plan.offload != Offload::kNone;
  const double e = prec.activation_bytes, T = MicroBatchTokens(plan, training);
  const double H = static_cast<double>(model.hidden), SPd = plan.sequence_shards();
  // FSDP2 gathers whole modules on one rank too (Framework::FsdpWraps).
  const bool sharded3 =
      (plan.zero >= 3 && (plan.zero_shards() > 1 || plan.offload == Offload::kOptimizerAndParams)) ||
      fw.FsdpWraps(plan);
  if (sharded3 && !fw.Reshards(plan.pp)) {
    // Not resharded after forward (Framework::Reshards): the stage's gathered
    // parameters stay until its backward.
    const double P_r = d->params.total();
    d->zero3_gather =
        P3D_PART(why, "buffers.zero3_gather", "param_bytes*P_r", prec.param_bytes * P_r,
                 "the stage's parameters, kept gathered from forward to backward",
                 {"param_bytes", static_cast<double>(prec.param_bytes)}, {"P_r", P_r});
  } else if (sharded3) {
    const double largest =
        std::max(shared.LargestLayer(), std::max(d->params.embedding, d->params.head));
    d->zero3_gather = P3D_PART(
        why, "buffers.zero3_gather", "param_bytes*modules*max(P_layer, P_embedding, P_head)",
        prec.param_bytes * kZero3PrefetchModules * largest,
        "the module computing and the one prefetched",
        {"param_bytes", static_cast<double>(prec.param_bytes)},
        {"modules", static_cast<double>(kZero3PrefetchModules)}, {"P_layer", shared.LargestLayer()},
        {"P_embedding", d->params.embedding}, {"P_head", d->params.head});
  } else {
    d->zero3_gather = P3D_PART(why, "buffers.zero3_gather", "0", 0, "");
  }
  // With offload under ZeRO-2/3 the buckets also stage each micro-batch's
  // gradient for its copy to the host, even at DP = 1. A contiguous gradient
  // buffer (Megatron's DDP) is reduced in place: no ZeRO-0/1 buckets.
  if ((plan.grad_group() > 1 || (offload && plan.zero >= 2)) &&
      !(fw.contiguous_grad_buffer && plan.zero <= 1)) {
    const double n = d->params.total(), bucket = fw.GradBucketElements(plan.grad_group());
    d->grad_buckets = P3D_PART(
        why, "buffers.grad_buckets", "grad_bytes*min(buckets*bucket_elems, P_r)",
        prec.grad_bytes * std::min(kGradBuckets * bucket, n), "one bucket reducing, one filling",
        {"grad_bytes", static_cast<double>(prec.grad_bytes)},
        {"buckets", static_cast<double>(kGradBuckets)}, {"bucket_elems", bucket}, {"P_r", n});
  } else {
    d->grad_buckets = P3D_PART(why, "buffers.grad_buckets", "0", 0, "");
  }
  d->pp_buffers = plan.pp > 1 ? P3D_PART(why, "buffers.pp_send_recv", "2*VPP*e*T*H/SPd",
                                         2.0 * plan.vpp * e * T * H / SPd, "",
                                         {"VPP", static_cast<double>(plan.vpp)}, {"e", e}, {"T", T},
                                         {"H", H}, {"SPd", SPd})
                              : P3D_PART(why, "buffers.pp_send_recv", "0", 0, "");
  // SP's all-gather buffer, or the userbuffers the TP overlap registers.
  const double tp_bufs = fw.tp_overlap == TpOverlap::kUserBuffers ? fw.tp_overlap_buffers : 1;
  d->tp_buffers =
      plan.sequence_shards() > 1
          ? P3D_PART(why, "buffers.sp_all_gather", "bufs*e*T*H", tp_bufs * e * T * H,
                     "the all-gathered sequence (userbuffers: one per overlapped GEMM input)",
                     {"bufs", tp_bufs}, {"e", e}, {"T", T}, {"H", H})
          : P3D_PART(why, "buffers.sp_all_gather", "0", 0, "");
  d->backward_scratch = why != nullptr ? BackwardScratchBytes(model, training, plan, why) : shared.backward_scratch;
  d->cp_buffers = why != nullptr ? CpRingBytes(model, training, plan, why) : shared.cp_ring;
  d->memory.buffers = d->zero3_gather + d->grad_buckets + d->pp_buffers + d->tp_buffers +
                      d->backward_scratch + d->cp_buffers;
}

// The gradients beside the activations and buffers when they come after them
// (GradientsAfterActivations): the stage's peak holds max(G, activations +
// buffers), i.e. the gradients beyond what the freed activations make room for.
void Gradients(const Framework& fw, const Plan& plan, StageMemoryDetail* d, Derivation* why) {
  if (!GradientsAfterActivations(fw, plan)) return;
  MemoryBreakdown& m = d->memory;
  m.gradients = P3D_PART(why, "gradients", "max(0, G - (activations + buffers))",
                         std::max(0.0, m.gradients - (m.activations + m.buffers)),
                         "freed after each step (zero_grad set_to_none), made by the backward as it frees "
                         "the activations: the part beyond them",
                         {"G", m.gradients}, {"activations", m.activations}, {"buffers", m.buffers});
}

void Runtime(const ModelSpec& model, const ClusterSpec& cluster, const Plan& plan, int stage,
             StageMemoryDetail* d, Derivation* why) {
  const RuntimeMemory& rt = cluster.gpu.runtime;
  d->communicators = memory_internal::Communicators(model, plan, stage);
  d->cuda_context = P3D_PART(why, "runtime.cuda_context", "context", rt.cuda_context_bytes,
                             "CUDA context + cuBLAS workspace", {"context", rt.cuda_context_bytes});
  const double c = d->communicators;
  const double first =
      rt.nccl_first_comm_bytes > 0 ? rt.nccl_first_comm_bytes : rt.nccl_per_comm_bytes;
  const double p2p = plan.pp > 1 ? rt.nccl_p2p_bytes : 0;
  d->nccl = c > 0
                ? P3D_PART(why, "runtime.nccl", "first + (c - 1)*per_comm + p2p",
                           NcclBytes(rt, d->communicators, plan.pp > 1),
                           "c communicators: world, TP, DP, PP, embedding group", {"first", first},
                           {"c", c}, {"per_comm", rt.nccl_per_comm_bytes}, {"p2p", p2p})
                : P3D_PART(why, "runtime.nccl", "0", 0, "");
  const MemoryBreakdown& mem = d->memory;
  d->allocator = P3D_PART(why, "runtime.allocator", "fraction*(activations + buffers)",
                          rt.allocator_fraction * (mem.activations + mem.buffers), "",
                          {"fraction", rt.allocator_fraction}, {"activations", mem.activations},
                          {"buffers", mem.buffers});
  d->memory.runtime = d->cuda_context + d->nccl + d->allocator;
}

StageMemoryDetail StageDetail(const PlanShared& shared, const StageShape& shape, const ModelSpec& model,
                              const TrainingSpec& training, const ClusterSpec& cluster,
                              const Plan& plan, Derivation* why) {
  const int stage = shape.stage;
  StageMemoryDetail d;
  d.stage = stage;
  d.layers = shape.layers;
  d.kinds = shape.kinds;
  d.params = shape.params;
  const StageParams& p = d.params;
  const FfnCounts ffn(d.kinds);
  const double n =
      !model.moe()
          ? P3D_TERM(why, "params.stage", "L_r*P_layer + P_embedding + P_head + P_final_norm", p.total(),
                     "parameters of the stage on one TP rank", {"L_r", static_cast<double>(d.layers)},
                     {"P_layer", shared.layer_params[0]}, {"P_embedding", p.embedding}, {"P_head", p.head},
                     {"P_final_norm", p.final_norm})
          : P3D_TERM(why, "params.stage", "L_dense*P_dense + L_moe*P_moe + P_embedding + P_head + P_final_norm",
                     p.total(), "parameters of the stage on one TP rank: dense and MoE layers",
                     {"L_dense", ffn.n[0]}, {"P_dense", shared.layer_params[0]}, {"L_moe", ffn.n[1]},
                     {"P_moe", shared.layer_params[1]}, {"P_embedding", p.embedding}, {"P_head", p.head},
                     {"P_final_norm", p.final_norm});
  const ScheduleKind schedule = ScheduleOf(plan);
  const char* in_flight_formula = "m";
  const double in_flight = InFlightMicroBatches(schedule, plan.pp, plan.vpp, plan.grad_accum, stage,
                                                why ? &in_flight_formula : nullptr);
  d.in_flight =
      P3D_TERM(why, "in_flight", in_flight_formula, in_flight,
               "micro-batches whose activations the stage holds at its peak",
               {"m", static_cast<double>(plan.grad_accum)}, {"PP", static_cast<double>(plan.pp)},
               {"VPP", static_cast<double>(plan.vpp)}, {"r", static_cast<double>(stage)});
  ModelStates(training.precision, training.framework, plan, n, d.params.experts, &d, why);
  if (training.fp8 != Fp8Recipe::kOff) Fp8Weights(model, training, cluster.gpu, plan, &d, why);
  Activations(shared, model, training, plan, stage, &d, why);
  Buffers(shared, model, training, plan, &d, why);
  Gradients(training.framework, plan, &d, why);
  Runtime(model, cluster, plan, stage, &d, why);
  return d;
}

}  // namespace

StageMemoryDetail StageMemoryDetails(const ModelSpec& model, const TrainingSpec& training,
                                     const ClusterSpec& cluster, const Plan& plan, int stage) {
  return StageDetail(PlanShared(model, training, plan), StageShape(model, plan, stage), model, training,
                     cluster, plan);
}

MemoryEstimate EstimateMemory(const ModelSpec& model, const TrainingSpec& training,
                              const ClusterSpec& cluster, const Plan& plan) {
  const PlanShared shared(model, training, plan);
  MemoryEstimate est;
  est.stages.reserve(plan.pp);
  for (int r = 0; r < plan.pp; ++r) {
    StageMemoryDetail d = StageDetail(shared, StageShape(model, plan, r), model, training, cluster, plan);
    est.stages.push_back({r, d.layers, d.memory, d.host.total()});
    if (d.memory.total() > est.stages[est.peak_stage].memory.total()) est.peak_stage = r;
    est.host_bytes_per_node =
        std::max(est.host_bytes_per_node, GpusOnNode(cluster) * d.host.total());
  }
  return est;
}

int GpusOnNode(const ClusterSpec& cluster) {
  const int n = cluster.num_gpus > 0 ? std::min(cluster.node.gpus_per_node, cluster.num_gpus)
                                     : cluster.node.gpus_per_node;
  return std::max(1, n);
}

namespace {

// The stages that can hold the most (see PeakStageMemory): 0, then 1 when it
// is a middle stage, then PP-1; `count` of them are valid.
// With leading dense layers (DeepSeek) a middle stage may hold fewer MoE
// layers than a later one: the first middle stage free of dense layers is a
// candidate too.
struct PeakCandidates {
  int stage[4];
  int count = 0;
  PeakCandidates(const ModelSpec& model, const Plan& plan) {
    const int pp = plan.pp;
    stage[count++] = 0;
    if (pp > 2) stage[count++] = 1;
    if (model.moe() && model.dense_layers > 0) {
      for (int r = 1; r < pp - 1; ++r) {
        if (FfnCounts(StageKinds(model, plan, r)).n[0] > 0) continue;
        if (r > 1) stage[count++] = r;
        break;
      }
    }
    if (pp > 1) stage[count++] = pp - 1;
  }
};

// The shapes of the PeakCandidates stages, in stage order.
struct PeakStages {
  StageShape shape[4];
  int count = 0;
  PeakStages() = default;
  PeakStages(const ModelSpec& model, const Plan& plan) {
    const PeakCandidates candidates(model, plan);
    for (; count < candidates.count; ++count) shape[count] = StageShape(model, plan, candidates.stage[count]);
  }
};

// PeakStageMemory over `stages`, stopping at the first stage whose total
// exceeds `stop_above` (see PeakMemoryCache::Peak).
MemoryBreakdown PeakOver(const PlanShared& shared, const PeakStages& stages, const ModelSpec& model,
                         const TrainingSpec& training, const ClusterSpec& cluster, const Plan& plan,
                         int* peak_stage, double* host_bytes_per_node, double stop_above) {
  // The middle stages hold equal parameters and layers, and every term but
  // the stored activations (which grow with the in-flight micro-batches, most
  // on stage 1) is equal among them; so the peak is stage 0 (embedding),
  // stage 1 or the last stage (head, loss). In stage order, so that a tie
  // goes to the first stage, as in EstimateMemory. Host bytes grow with the
  // stage's parameters, so the same stages bound them.
  MemoryBreakdown peak;
  int stage = 0;
  double host = 0;
  for (int i = 0; i < stages.count; ++i) {
    const StageMemoryDetail d = StageDetail(shared, stages.shape[i], model, training, cluster, plan);
    const double total = d.memory.total();
    if (i == 0 || total > peak.total()) {
      peak = d.memory;
      stage = stages.shape[i].stage;
    }
    host = std::max(host, d.host.total());
    if (total > stop_above) break;  // the largest so far: the stages before it were below
  }
  if (peak_stage != nullptr) *peak_stage = stage;
  if (host_bytes_per_node != nullptr)
    *host_bytes_per_node = plan.offload == Offload::kNone ? 0 : GpusOnNode(cluster) * host;
  return peak;
}

// The plan fields StageShape depends on.
struct LayoutKey {
  int tp = 0, pp = 0, vpp = 0, first = 0, last = 0, ep = 0, etp = 0;
  bool embedding = false, loss = false;
  LayoutKey() = default;
  explicit LayoutKey(const Plan& p)
      : tp(p.tp), pp(p.pp), vpp(p.vpp), first(p.first_stage_layers), last(p.last_stage_layers), ep(p.ep),
        etp(p.etp), embedding(p.account_for_embedding), loss(p.account_for_loss) {}
  bool operator==(const LayoutKey&) const = default;
};

// The plan fields PlanShared depends on.
struct SharedKey {
  int tp = 0, cp = 0, sequence_shards = 0, ep = 0, etp = 0;
  int64_t micro_batch = 0;
  AttentionImpl attention = AttentionImpl::kFused;
  SharedKey() = default;
  explicit SharedKey(const Plan& p)
      : tp(p.tp), cp(p.cp), sequence_shards(p.sequence_shards()), ep(p.ep), etp(p.etp),
        micro_batch(p.micro_batch), attention(p.attention) {}
  bool operator==(const SharedKey&) const = default;
};


}  // namespace

double HostBytesPerNode(const ModelSpec& model, const TrainingSpec& training,
                        const ClusterSpec& cluster, const Plan& plan) {
  if (plan.offload == Offload::kNone) return 0;
  double host = 0;
  PeakStageMemory(model, training, cluster, plan, nullptr, &host);
  return host;
}

MemoryBreakdown PeakStageMemory(const ModelSpec& model, const TrainingSpec& training,
                                const ClusterSpec& cluster, const Plan& plan, int* peak_stage,
                                double* host_bytes_per_node) {
  return PeakOver(PlanShared(model, training, plan), PeakStages(model, plan), model, training, cluster,
                  plan, peak_stage, host_bytes_per_node, std::numeric_limits<double>::infinity());
}

struct PeakMemoryCache::Impl {
  const ModelSpec& model;
  const TrainingSpec& training;
  const ClusterSpec& cluster;
  RecentValues<LayoutKey, PeakStages> stages;
  RecentValues<SharedKey, PlanShared> shared;
};

PeakMemoryCache::PeakMemoryCache(const ModelSpec& model, const TrainingSpec& training,
                                 const ClusterSpec& cluster)
    : impl_(new Impl{model, training, cluster, {}, {}}) {}

PeakMemoryCache::~PeakMemoryCache() = default;

MemoryBreakdown PeakMemoryCache::Peak(const Plan& plan, double* host_bytes_per_node, double stop_above) {
  Impl& im = *impl_;
  const PeakStages& stages =
      im.stages.Get(LayoutKey(plan), [&] { return PeakStages(im.model, plan); });
  const PlanShared& shared =
      im.shared.Get(SharedKey(plan), [&] { return PlanShared(im.model, im.training, plan); });
  return PeakOver(shared, stages, im.model, im.training, im.cluster, plan, nullptr, host_bytes_per_node,
                  stop_above);
}

std::vector<DerivedTerm> ExplainMemory(const ModelSpec& model, const TrainingSpec& training,
                                       const ClusterSpec& cluster, const Plan& plan, int stage) {
  Derivation why;
  StageDetail(PlanShared(model, training, plan, &why), StageShape(model, plan, stage), model, training,
              cluster, plan, &why);
  std::vector<DerivedTerm> terms;
  for (const DerivedTerm& t : why.terms())
    if (!t.name.starts_with("host.")) terms.push_back(t);
  return terms;
}

std::vector<DerivedTerm> ExplainHostMemory(const ModelSpec& model, const TrainingSpec& training,
                                           const ClusterSpec& cluster, const Plan& plan,
                                           int stage) {
  std::vector<DerivedTerm> terms;
  if (plan.offload == Offload::kNone) return terms;
  Derivation why;
  StageDetail(PlanShared(model, training, plan), StageShape(model, plan, stage), model, training, cluster,
              plan, &why);
  for (const DerivedTerm& t : why.terms())
    if (t.name.starts_with("host.")) terms.push_back(t);
  const double gpus = GpusOnNode(cluster);
  const double per_gpu = HostBytesPerNode(model, training, cluster, plan) / gpus;
  terms.push_back({"host.node",
                   "gpus*max_per_gpu",
                   {{"gpus", gpus}, {"max_per_gpu", per_gpu}},
                   gpus * per_gpu,
                   "GPUs of a node x the largest per-GPU host total over the stages"});
  return terms;
}

}  // namespace p3d
