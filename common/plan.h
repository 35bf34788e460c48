// Plan and TrainingSpec: what the planner enumerates and the simulator and
// executor consume.
//
// Rank layout (shared by simulator and executor, Megatron's order
// megatron/core/parallel_state.py: tp-cp-ep-dp-pp):
//   rank = tp_rank + TP * (cp_rank + CP * (dp_rank + DP * pp_rank))
// TP is fastest, so TP groups are consecutive ranks and sit inside a node;
// the CP ranks of one TP rank are TP apart (common/rank_grid.h PlanGroupSpan).
// Batch identity (exact, never rounded; the CP ranks of a DP rank share its
// sequences, each holding S/CP tokens of every one):
//   global_batch = micro_batch * grad_accum * DP
#pragma once

#include <cstdint>
#include <string>

#include "common/fp8.h"
#include "common/framework.h"

namespace p3d {

enum class Recompute { kNone, kSelective, kFull };
const char* RecomputeName(Recompute r);  // "none" | "selective" | "full"
// Inverse of RecomputeName; false when `name` is none of the three.
bool ParseRecompute(const std::string& name, Recompute* out);

// Input limits every front end enforces (docs/metrics.md, "Input limits"):
// far beyond any real cluster or recipe, small enough that every count stays
// exact in int64 and every search and schedule simulation stays bounded.
inline constexpr int64_t kMaxGpus = int64_t{1} << 24;         // 16,777,216
inline constexpr int64_t kMaxGlobalBatch = int64_t{1} << 16;  // sequences per step (LAMB: 65536)
inline constexpr int64_t kMaxSeq = int64_t{1} << 24;          // tokens per sequence

// The attention core's implementation (docs/executor.md, docs/memory-model.md):
//   kFused    cuDNN's fused flash attention (executor/fused_attention.h): no
//             S x S tensor in memory; stores O and the fp32 row log-sum-exp
//   kUnfused  batched GEMMs over a materialised bf16 S x S score matrix
//             (executor/attention_core.h), kept for reference and tests
enum class AttentionImpl { kFused, kUnfused };
const char* AttentionImplName(AttentionImpl a);  // "fused" | "unfused"
// Inverse of AttentionImplName; false when `name` is neither.
bool ParseAttentionImpl(const std::string& name, AttentionImpl* out);

// CPU offload (ZeRO-Offload / ZeRO-Infinity style, docs/offload.md):
//   kOptimizer          fp32 master weights, Adam moments and the fp32
//                       gradient accumulation live in host memory; the AdamW
//                       step runs on the CPU. Needs ZeRO >= 1 (DeepSpeed's
//                       offload_optimizer is a ZeRO feature).
//   kOptimizerAndParams also the bf16 parameter shards of ZeRO-3 live on the
//                       host and are uploaded for every forward and backward.
enum class Offload { kNone, kOptimizer, kOptimizerAndParams };
const char* OffloadName(Offload o);  // "none" | "optimizer" | "params"
// Inverse of OffloadName; false when `name` is none of the three.
bool ParseOffload(const std::string& name, Offload* out);

// Precision recipe, bytes per element. Default is the executor's recipe:
// bf16 weights and activations, fp32 gradient accumulation, fp32 master
// weights and Adam moments: 2 + 4 + 4 + 4 + 4 = 18 bytes per parameter.
// grad_bytes = 2 gives the ZeRO paper's 16-byte accounting.
struct Precision {
  int param_bytes = 2;       // working weights (bf16)
  int grad_bytes = 4;        // gradient accumulation buffer
  int master_bytes = 4;      // fp32 master copy of the weights
  int optimizer_bytes = 8;   // Adam first + second moment (fp32 each)
  int activation_bytes = 2;  // activations (bf16)
  int StateBytesPerParam() const {
    return param_bytes + grad_bytes + master_bytes + optimizer_bytes;
  }
};

inline constexpr int64_t kDefaultLogitsChunkTokens = 1024;

// The executor's causal blocking rule: the largest of 4, 2, 1 blocks whose
// size S/n is >= 64 and a multiple of 8 (small blocks make slow GEMMs).
inline int64_t DefaultAttentionBlocks(int64_t seq) {
  for (int64_t blocks : {4, 2}) {
    if (seq % (8 * blocks) == 0 && seq / blocks >= 64) return blocks;
  }
  return 1;
}

// Placement: the order in which the parallel groups take consecutive ranks,
// fastest first; since ranks fill the network's domains in order
// (simulator/network.h), it decides which tiers each group spans. Megatron's
// `order` (megatron/core/parallel_state.py initialize_model_parallel, set in
// megatron/training/initialize.py):
//   kDpBeforePp  "tp-cp-ep-dp-pp", the default:
//                rank = tp + TP*(cp + CP*(dp + DP*pp)): the data-parallel
//                group inside a pipeline stage, the stages far apart
//   kPpBeforeDp  "tp-pp-dp" (--use-tp-pp-dp-mapping):
//                rank = tp + TP*(pp + PP*dp): a pipeline's stages TP apart,
//                the data-parallel members TP*PP apart. Megatron asks for no
//                CP or EP with it (rule tp-pp-dp=>cp=1,ep=1).
enum class Placement { kDpBeforePp, kPpBeforeDp };
const char* PlacementName(Placement p);  // "tp-cp-ep-dp-pp" | "tp-pp-dp"
// Inverse of PlacementName; false when `name` is neither.
bool ParsePlacement(const std::string& name, Placement* out);

struct TrainingSpec {
  int64_t global_batch = 512;  // sequences per optimizer step
  int64_t seq = 2048;          // tokens per sequence
  Precision precision;
  // Dropout layers on (attention-probability, attention-output and MLP-output
  // dropout, plus embedding dropout): their 1-byte masks are stored
  // activations. p3d trains without dropout; Korthikanti's figures count it.
  bool dropout = false;
  // The executor's recipe, which the simulator assumes (executor/model.h):
  // tokens per chunk of the fused, chunked cross-entropy (0 = the whole
  // micro-batch's B*S tokens at once) ...
  int64_t logits_chunk_tokens = kDefaultLogitsChunkTokens;
  // ... and causal query blocks of the batched attention (block i of n
  // multiplies only keys of blocks <= i: (n+1)/(2n) of the S x S work);
  // 0 = DefaultAttentionBlocks(seq), 1 = the full square.
  int64_t attention_blocks = 0;
  int64_t AttentionBlocks() const {
    return attention_blocks > 0 ? attention_blocks : DefaultAttentionBlocks(seq);
  }
  // FP8 recipe of the linear layers' GEMMs (common/fp8.h); kOff: all bf16.
  Fp8Recipe fp8 = Fp8Recipe::kOff;
  // MoE expert-parallel all-to-all overlap (Megatron-Core
  // --overlap-moe-expert-parallel-comm, Megatron-Bridge moe_a2a_overlap): the
  // 1F1B steady state runs one micro-batch's forward with another's backward,
  // each pass's dispatch/combine hidden under the other's compute
  // (docs/time-model.md "MoE layers"). Off, and for plans Megatron-Core
  // refuses it with (EpOverlapRuns): the all-to-alls are exposed.
  bool ep_a2a_overlap = false;
  // MoE token dispatch with DeepEP (Megatron-Core --moe-token-dispatcher-type
  // flex --moe-enable-deepep, NeMo AutoModel backend.enable_deepep): each token
  // crosses to every node holding one of its experts once, over RDMA, and fans
  // out inside that node over NVLink (DeepEpAllToAllSeconds,
  // simulator/comm_model.h; docs/time-model.md "MoE layers"). Off: the
  // all-to-all dispatcher, one copy per routed expert.
  bool ep_deepep = false;
  // The implementation the plan is predicted for (common/framework.h): p3d's
  // executor unless a framework profile sets it (p3d-plan --framework), along
  // with the recipe fields above.
  Framework framework;
  // Working-weight bytes stored per parameter: none where the fp32 master is
  // the parameter (Framework::master_is_param, FSDP2), else precision's.
  int StoredParamBytes() const { return framework.master_is_param ? 0 : precision.param_bytes; }
  // Bytes of model state stored per parameter (the table header's figure).
  int StateBytesPerParam() const {
    return StoredParamBytes() + precision.grad_bytes + precision.master_bytes + precision.optimizer_bytes;
  }
};

// One point of the search space. DP * TP * CP * PP == number of GPUs.
struct Plan {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  // Context parallel (Megatron-Core --context-parallel-size, Transformer
  // Engine's p2p ring attention): every sequence is cut into 2*CP chunks and
  // CP rank i holds chunks i and 2*CP-1-i (load-balanced causal attention),
  // so each rank computes on B*S/CP tokens and exchanges K/V in a ring.
  // Gradients are reduced, and ZeRO shards, over the DP x CP group.
  int cp = 1;
  int vpp = 1;              // virtual stages (model chunks) per pipeline rank; 1 = plain 1F1B
  int zero = 0;             // ZeRO stage 0..3 over the DP x CP group (or its shard groups)
  // Hybrid sharding (HSDP; torchtitan data_parallel_shard_degree, PyTorch
  // FSDP HYBRID_SHARD, Megatron-Core --num-distributed-optimizer-instances):
  // ZeRO shards inside groups of zero_shard consecutive members of the DP x CP
  // group and the groups are replicas; 0 = one group of all DP x CP ranks.
  int zero_shard = 0;
  int64_t micro_batch = 1;  // sequences per micro-batch per DP rank
  int64_t grad_accum = 1;   // micro-batches per step per DP rank (m in the pipeline formulas)
  Recompute recompute = Recompute::kNone;
  bool sequence_parallel = false;  // Megatron SP (only meaningful with tp > 1)
  Offload offload = Offload::kNone;
  AttentionImpl attention = AttentionImpl::kFused;
  // Uneven pipeline stages, Megatron's --decoder-first-pipeline-num-layers and
  // --decoder-last-pipeline-num-layers: transformer layers on the first and on
  // the last pipeline stage; 0 = not set (the even split, or that stage is a
  // middle stage). StageLayers gives every stage's count, PipelineSplitRule the
  // rules a split must keep.
  int first_stage_layers = 0;
  int last_stage_layers = 0;
  // Megatron-Core's --account-for-embedding-in-pipeline-split and
  // --account-for-loss-in-pipeline-split (TransformerConfig
  // account_for_embedding/loss_in_pipeline_split): the input embedding
  // (the loss: final norm, LM head, cross-entropy) counts as one layer when
  // the layers are divided over the PP x VPP chunks, so the first (last)
  // chunk builds one transformer layer fewer. ChunkLayers gives the counts.
  bool account_for_embedding = false;
  bool account_for_loss = false;
  // Expert parallelism (MoE models), Megatron-Core's --expert-model-parallel-size:
  // each MoE layer's routed experts are split over EP ranks carved from the
  // TP x CP x DP ranks of a pipeline stage (megatron/core/parallel_state.py:
  // the expert rank generator orders "tp-ep-dp-pp" with no CP, over the same
  // ranks the dense "tp-cp-dp-pp" order lays out, so an EP group is EP
  // consecutive blocks of ETP ranks, stride ETP).
  // 1 = experts replicated over DP.
  int ep = 1;
  // Expert tensor parallelism (--expert-tensor-parallel-size): the experts'
  // own TP degree; 0 = TP (MCore's default). The EP group then has stride
  // ETP, and the expert-data-parallel group, which reduces the expert
  // gradients and shards their optimizer states, has DP*CP*TP/(EP*ETP) ranks,
  // stride EP*ETP (parallel_state.py's expert "tp-ep-dp-pp" order).
  int etp = 0;
  // Which groups take the nearest ranks (see Placement).
  Placement placement = Placement::kDpBeforePp;

  int gpus() const { return dp * tp * cp * pp; }
  int expert_tp() const { return etp > 0 ? etp : tp; }
  // The expert-data-parallel group's size: DP*CP*TP/(EP*ETP) (the expert
  // layers have no CP: their tokens are independent, so CP ranks join the
  // expert data-parallel group as Megatron-Core's expert rank generator does).
  int expert_dp() const { return grad_group() * tp / (ep * expert_tp()); }
  int64_t global_batch() const { return micro_batch * grad_accum * dp; }
  // Ranks that hold the same parameters and reduce their gradients together:
  // Megatron's data-parallel group with context parallel (DP x CP).
  int grad_group() const { return dp * cp; }
  // Ranks ZeRO shards a state over: the shard group (HSDP) or the whole DP x CP group.
  int zero_shards() const { return zero_shard > 0 ? zero_shard : grad_group(); }
  // Replicas of each ZeRO shard (HSDP): DP x CP / shard group; 1 without HSDP.
  int zero_replicas() const { return grad_group() / zero_shards(); }
  // Shards of the activations between the TP regions (norms, residual,
  // dropout): TP with sequence parallelism, else 1 (replicated).
  int sequence_shards() const { return sequence_parallel && tp > 1 ? tp : 1; }
  bool uneven_stages() const { return first_stage_layers != 0 || last_stage_layers != 0; }
  // The embedding or the loss counts as a layer in the pipeline split.
  bool accounts_edges() const { return account_for_embedding || account_for_loss; }
};

// Whether the EP all-to-all overlap the training asks for
// (TrainingSpec::ep_a2a_overlap) runs for `plan`: Megatron-Core's
// TransformerConfig refuses it without expert parallelism, with full
// recompute, and with PP > 1 without interleaving (VPP > 1). A plan outside
// it is priced and exported with its all-to-alls exposed.
inline bool EpOverlapRuns(const TrainingSpec& training, const Plan& plan) {
  return training.ep_a2a_overlap && plan.ep > 1 && plan.recompute != Recompute::kFull &&
         (plan.pp == 1 || plan.vpp > 1);
}

// Tokens of one micro-batch on one rank: B*S/CP (a CP rank holds S/CP
// tokens of each of its B sequences).
inline double MicroBatchTokens(const Plan& plan, const TrainingSpec& training) {
  return static_cast<double>(plan.micro_batch) * static_cast<double>(training.seq) / plan.cp;
}

// Transformer layers on pipeline rank `stage` (all of its VPP chunks), as
// Megatron-Core splits them (transformer_block.py get_num_layers_to_build):
// a set first (last) count on stage 0 (PP-1), the remaining layers shared
// evenly by the other, "middle", stages; with neither set L / PP on every
// stage; with the embedding or loss accounted, the sum of its ChunkLayers.
// Worked example, 126 layers on PP 16 with first = last = 7: stage 0 and 15
// hold 7, stages 1..14 hold (126 - 14) / 14 = 8. Preconditions:
// PipelineSplitRule(plan, layers) is nullptr and 0 <= stage < PP.
int64_t StageLayers(const Plan& plan, int64_t layers, int stage);

// Transformer layers in virtual stage v = c*PP + r (chunk c of rank r): the
// one source of the layer-to-chunk assignment (memory, schedule, layer
// kinds, exports). StageLayers(r) / VPP, or with the embedding and/or loss
// accounted (Plan::account_for_embedding / account_for_loss), Megatron-Core's
// (L + E + Lo) / (PP x VPP) per chunk, less one on virtual stage 0 (E) and
// on virtual stage PP*VPP-1 (Lo). Worked example, Llama-3.1-405B (126 layers)
// on PP 8 x VPP 8 with both: 128 / 64 = 2 per chunk; virtual stage 0 holds
// the embedding + 1 layer, 63 holds 1 layer + the loss, so stage 0 and 7
// hold 15 layers and stages 1..6 16. A chunk may hold none (Megatron asserts
// >= 0): Qwen3-235B (94 layers) on PP 32 x VPP 3 gives 96 / 96 = 1, and
// virtual stage 0 holds the embedding alone. Same preconditions as StageLayers.
int64_t ChunkLayers(const Plan& plan, int64_t layers, int v);

// The id of the first pipeline-split rule `plan` breaks for a model of
// `layers` transformer layers (ids and meanings: planner/rules.h), or nullptr
// when every stage and chunk gets a whole number of layers Megatron accepts.
// The message goes to *detail only when detail is non-null.
const char* PipelineSplitRule(const Plan& plan, int64_t layers, std::string* detail = nullptr);

// Layers per stage in short form: "8x16" (even), "7,8x14,7" (first, middle
// count x stages, last), "6x11,4" (last set only), "15,16x6,15" (embedding
// and loss accounted). Same preconditions as StageLayers.
std::string StageLayersSummary(const Plan& plan, int64_t layers);

// One-line human summary, e.g. "DP8 TP4 PP2 VPP1 ZeRO-1 mb2 ga32 rc=selective SP"
// ("CP2 " after TP with context parallel, "/shard8" after the ZeRO stage with
// hybrid sharding; " offload=optimizer" appended when offloading, " attn=unfused" for the unfused core,
// " first-stage=7 last-stage=7" for the set counts of uneven stages,
// " account=embedding,loss" for the accounted pipeline split).
std::string PlanSummary(const Plan& plan);

}  // namespace p3d
