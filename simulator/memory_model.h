// Memory model: bytes one GPU holds at its peak, per pipeline stage.
//
// docs/memory-model.md derives every term. In short, for pipeline rank r (all
// GPUs of one stage are alike, so "per stage" is "per GPU of that stage"):
//   weights/gradients/optimizer  Precision bytes x parameters of the stage on
//                                one TP rank, sharded over DP by the ZeRO stage
//   activations                  stored activations of the in-flight
//                                micro-batches (Korthikanti et al. 2022,
//                                generalised to GQA, SwiGLU, F != 4H), the
//                                recompute working set, embedding (stage 0)
//                                and logits/loss temporaries (last stage)
//   buffers                      ZeRO-3 gather, gradient buckets, PP send/recv,
//                                SP all-gather
//   runtime                      CUDA context, NCCL communicators, allocator
// With CPU offload (Plan::offload, docs/offload.md) the fp32 master weights,
// Adam moments and (ZeRO-2/3) the fp32 gradient shard leave the GPU, and with
// parameter offload the ZeRO-3 bf16 parameter shard too; the host then holds
// them per GPU (HostMemoryDetail), checked per node against host memory.
//
// Preconditions for every function here: Validate(model) passed and the plan
// is legal (planner/rules.h): degrees, micro_batch and grad_accum >= 1, the
// pipeline split legal (PipelineSplitRule in common/plan.h: every stage and
// chunk holds a whole number of layers), 0 <= stage < pp. Nothing is checked
// on the hot path.
//
// Thread-safety: all functions are pure (no shared state); call them from any
// number of threads.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "models/model_spec.h"
#include "common/plan.h"
#include "simulator/derivation.h"
#include "simulator/estimate.h"
#include "simulator/hardware.h"
#include "simulator/schedule.h"

namespace p3d {

// Assumptions the buffers term depends on (docs/memory-model.md); the bucket
// size is the framework's (Framework::GradBucketElements).
inline constexpr int kGradBuckets = 2;               // double-buffered (one reducing, one filling)
inline constexpr int kZero3PrefetchModules = 2;      // ZeRO-3 gathers the current + next module
// Host memory one GPU's process holds outside the offloaded states with
// offload: CUDA driver host allocations, the runtime, data loading (an
// assumption until calibrated, docs/memory-model.md).
inline constexpr double kHostRuntimePerGpuBytes = 2.0 * 1024 * 1024 * 1024;

// Schedule a plan runs: interleaved 1F1B when vpp > 1, else 1F1B.
ScheduleKind ScheduleOf(const Plan& plan);

// Micro-batches' worth of the stage's layers whose activations are stored at
// the stage's peak (the unit is "all layers of the stage for one micro-batch"):
//   GPipe          m
//   1F1B           min(m, PP - r)                                (Megatron warm-up + 1)
//   interleaved    min(m*VPP, (VPP-1)*PP + 2*(PP-r-1) + 1) / VPP (Megatron warm-up + 1);
//                  m when m == PP (every forward first on every rank)
// For r = 0 the interleaved count is PP * (1 + (PP-1)/(PP*VPP)) (Korthikanti sec. 1).
// `formula` (optional) receives the formula of the branch taken, over m, PP, VPP, r.
double InFlightMicroBatches(ScheduleKind kind, int pp, int vpp, int64_t m, int stage,
                           const char** formula = nullptr);

// Parameters (elements) one GPU of `stage` holds after TP/PP sharding, before
// ZeRO sharding, by origin.
struct StageParams {
  double layers =
      0;  // the stage's transformer layers on one TP rank (norms, row-parallel biases replicated)
  double embedding =
      0;  // stage 0: vocab-parallel word embedding V*H/TP + learned positions + embedding norm (replicated)
  double head =
      0;  // last stage: LM head V*H/TP; tied with PP > 1: the embedding copy Megatron keeps there
  double final_norm = 0;  // last stage: final norm (replicated)
  // Of `layers`: the routed experts (E/EP per MoE layer), whose gradients are
  // reduced and optimizer states sharded over the expert-data-parallel group
  // (DP/EP ranks) instead of DP.
  double experts = 0;
  double total() const { return layers + embedding + head + final_norm; }
};
// Parameters of one transformer layer of `kind` on one TP rank (MoE: all
// routed and shared experts, the router replicated).
// With EP > 1 the routed experts are split over the EP group: E/EP of them,
// each split over the expert TP `etp` (0 = tp).
double LayerParamsPerGpu(const ModelSpec& model, const LayerKind& kind, int tp, int ep = 1, int etp = 0);
// The routed experts' part of LayerParamsPerGpu (0 for a dense layer), over expert TP `etp` (>= 1).
double RoutedExpertParamsPerGpu(const ModelSpec& model, const LayerKind& kind, int etp, int ep = 1);
// RoutedExpertParamsPerGpu of `kinds.count[k]` layers of each kind.
double StageExpertParams(const ModelSpec& model, const LayerKindCounts& kinds, int etp, int ep);
// Parameters of `kinds.count[k]` layers of each kind on one TP (and EP) rank.
double StageLayerParams(const ModelSpec& model, const LayerKindCounts& kinds, int tp, int ep = 1, int etp = 0);
// The weights of one `kind` layer's linear layers (q/k/v and MLA's
// projections, out-proj, the MLP or the routed and shared experts; no biases,
// norms or router) on one TP rank: what FP8 GEMMs multiply. The routed
// experts as RoutedExpertParamsPerGpu holds them: E/EP of them at expert TP
// `etp` (0: TP); shared experts TP-split.
double LinearWeightsPerLayer(const ModelSpec& model, const LayerKind& kind, int tp, int ep = 1, int etp = 0);
// LinearWeightsPerLayer of `kinds.count[k]` layers of each kind.
double StageLinearWeights(const ModelSpec& model, const LayerKindCounts& kinds, int tp, int ep = 1, int etp = 0);
StageParams ParamsOnStage(const ModelSpec& model, const Plan& plan, int stage);

// Activation bytes one transformer layer stores for one micro-batch on one GPU,
// under the plan's TP, SP and recompute mode (full recompute: the layer input
// only). training supplies seq, activation bytes and dropout.
double ActivationBytesPerLayer(const ModelSpec& model, const LayerKind& kind,
                               const TrainingSpec& training, const Plan& plan);

// CPU memory one GPU of a stage needs with offload, bytes (all 0 without
// offload). P_s = P_r / DP is the GPU's shard (offload needs ZeRO >= 1):
//   master     master_bytes * P_s     fp32 master weights
//   optimizer  optimizer_bytes * P_s  Adam moments
//   gradients  grad_bytes * P_s       pinned gradient shard the GPU copies into
//                                     and accumulates (fp32 by default)
//   params     param_bytes * P_s      pinned bf16 parameters the CPU step writes
//                                     and the GPU uploads (with parameter
//                                     offload: the resident ZeRO-3 shard)
//   runtime    kHostRuntimePerGpuBytes
struct HostMemoryDetail {
  double master = 0, optimizer = 0, gradients = 0, params = 0, runtime = 0;
  double total() const { return master + optimizer + gradients + params + runtime; }
};

// Every term of one stage, bytes per GPU; `memory` holds their sums.
struct StageMemoryDetail {
  int stage = 0;
  int64_t layers = 0;
  LayerKindCounts kinds;  // the stage's layers by kind (stage_kinds.h)
  StageParams params;
  double in_flight = 0;  // InFlightMicroBatches for this stage
  // activations
  double layer_activations = 0;      // ActivationBytesPerLayer x layers x in_flight
  double recompute_working = 0;      // one layer's recomputed tensors, one micro-batch
  double embedding_activations = 0;  // stage 0: embedding dropout mask and embedding-norm input x in_flight
  double loss_activations = 0;       // last stage: final-norm/head inputs + logits + fp32 softmax
  // buffers
  double zero3_gather = 0;
  double grad_buckets = 0;
  double pp_buffers = 0;
  double tp_buffers = 0;
  double backward_scratch = 0;  // one layer's activation-gradient temporaries, one micro-batch
  double cp_buffers = 0;        // context parallel: CpRingBytes
  // runtime
  int communicators = 0;  // NCCL communicators this rank belongs to
  double cuda_context = 0;
  double nccl = 0;
  double allocator = 0;
  MemoryBreakdown memory;
  HostMemoryDetail host;  // CPU memory with offload
};
StageMemoryDetail StageMemoryDetails(const ModelSpec& model, const TrainingSpec& training,
                                     const ClusterSpec& cluster, const Plan& plan, int stage);

// Every stage; peak_stage is the first stage with the largest total.
MemoryEstimate EstimateMemory(const ModelSpec& model, const TrainingSpec& training,
                              const ClusterSpec& cluster, const Plan& plan);

// The peak stage's breakdown, equal to EstimateMemory(...).peak() exactly, with
// no heap allocation. It evaluates only the stages that can be the peak: the
// middle stages hold equal layers (StageLayers) and stage 1 has the most
// in-flight micro-batches of them, so the peak is stage 0, 1 or PP-1 (with
// uneven stages a middle stage may hold more layers than stage 0).
// With `host_bytes_per_node`, also HostBytesPerNode's figure, from the same
// stage evaluations (the search needs both for every candidate).
MemoryBreakdown PeakStageMemory(const ModelSpec& model, const TrainingSpec& training,
                                const ClusterSpec& cluster, const Plan& plan, int* peak_stage,
                                double* host_bytes_per_node = nullptr);

// PeakStageMemory over the many plans of a search: the same figures, exactly,
// with what plans share kept instead of recomputed for each: the peak
// candidate stages' layers and parameters (they depend on TP, PP, VPP, the
// pipeline split, EP and ETP only) and the per-micro-batch terms (per-layer
// activations, loss, backward scratch, CP ring: TP, CP, micro-batch, SP,
// attention, EP and ETP only), each for the last few values looked up (the
// search's inner loops revisit a handful). The specs must outlive it.
// Thread-safety: one per thread.
class PeakMemoryCache {
 public:
  PeakMemoryCache(const ModelSpec& model, const TrainingSpec& training, const ClusterSpec& cluster);
  ~PeakMemoryCache();
  PeakMemoryCache(const PeakMemoryCache&) = delete;
  PeakMemoryCache& operator=(const PeakMemoryCache&) = delete;

  // PeakStageMemory(model, training, cluster, plan, nullptr, host_bytes_per_node).
  // Evaluation stops at the first stage whose total exceeds `stop_above` and
  // returns that stage's breakdown (the plan's peak is then above
  // stop_above, perhaps higher still) and the host figure of the stages
  // evaluated: the search needs no more to reject a plan that does not fit.
  MemoryBreakdown Peak(const Plan& plan, double* host_bytes_per_node,
                       double stop_above = std::numeric_limits<double>::infinity());

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A plan fits when its peak stage total is within the GPU's memory.
inline bool FitsInMemory(const MemoryBreakdown& peak, const GpuSpec& gpu) {
  return peak.total() <= gpu.memory_bytes;
}

// GPUs whose offloaded state one node's CPU memory holds: min(gpus_per_node, num_gpus).
int GpusOnNode(const ClusterSpec& cluster);
// CPU memory of one node with offload, bytes (0 without offload):
// GpusOnNode x the largest per-GPU HostMemoryDetail total over the stages (an
// upper bound, exact when every stage of a node holds equal parameters).
// No heap allocation (evaluates stages 0, 1 and PP-1, as PeakStageMemory).
double HostBytesPerNode(const ModelSpec& model, const TrainingSpec& training,
                        const ClusterSpec& cluster, const Plan& plan);
// Offload plans also need their host figure within the node's memory.
inline bool FitsInHostMemory(double host_bytes_per_node, const NodeSpec& node) {
  return host_bytes_per_node <= node.host_memory_bytes;
}

// One layer's backward temporaries for one micro-batch, as the executor
// allocates them (executor/memory_plan.cc): the q/k/v gradient in token and
// head layouts, the attention output gradient, the norm-output and residual
// gradients, the MLP pre- and post-activation gradients, and the score
// gradient [B, NH/TP, S, S]; activation bytes each. With the fused core
// (Plan::attention) no head layouts or score gradient, plus its fp32 workspace
// (dQ accumulator, row sums; docs/memory-model.md). Frameworks built on a
// caching allocator hold the same tensors transiently.
double BackwardScratchBytes(const ModelSpec& model, const TrainingSpec& training, const Plan& plan,
                            Derivation* why = nullptr);

// Context parallel's ring buffers during one layer's forward (0 at CP = 1):
// the K/V chunks received from the other CP-1 ranks plus its own, and each
// step's partial attention output and fp32 log-sum-exp, CP of each
// (Transformer Engine's AttnFuncWithCPAndKVP2P keeps them until the merge).
double CpRingBytes(const ModelSpec& model, const TrainingSpec& training, const Plan& plan,
                   Derivation* why = nullptr);

// The --explain derivation of `stage`: every term recorded where
// StageMemoryDetails computes it (simulator/derivation.h). The terms marked
// `part` are the MemoryBreakdown's parts and sum to the stage's total; the
// others (params.stage, in_flight, activations.per_layer*) are their inputs.
std::vector<DerivedTerm> ExplainMemory(const ModelSpec& model, const TrainingSpec& training,
                                       const ClusterSpec& cluster, const Plan& plan, int stage);
// The host terms of `stage` (HostMemoryDetail's; they sum to its total) and a
// last "host.node" line: GpusOnNode x the largest per-GPU host total. Empty
// without offload.
std::vector<DerivedTerm> ExplainHostMemory(const ModelSpec& model, const TrainingSpec& training,
                                           const ClusterSpec& cluster, const Plan& plan, int stage);

}  // namespace p3d
