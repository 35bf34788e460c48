// Memory planning: the executor allocates ONE device arena up front; every
// buffer of a training step is a named region of it, tagged with the term of
// the simulator's MemoryBreakdown (simulator/estimate.h) it belongs to, so
// measured memory can be compared with the estimate term by term:
//   weights      bf16 working weights (ZeRO-3 at DP > 1: this rank's shard;
//                the gathered units are a buffer)
//   gradients    fp32 gradient accumulation buffer (ZeRO-2/3 at DP > 1: the
//                reduced fp32 shard only; the per-unit staging is a buffer)
//   optimizer    fp32 master weights + Adam m + Adam v
//   activations  tensors stored in the forward pass for the backward pass
//                (per layer, per recompute mode), plus the loss's logits chunk
//   buffers      transient working memory of one layer at a time (attention
//                scores of the layer being computed, backward gradient buffers),
//                reduction scratch, token arrays, cuBLASLt workspace,
//                ZeRO-2/3 gradient staging, ZeRO-3 gather ring (ParamStateSizes)
// (runtime = CUDA context etc. is not in the arena; p3d-run measures it.)
//
// Stored activations per layer, T = B*S tokens, bf16 unless noted:
//   none       x_in, norm1_out [T,H]; q [T,NH*HD]; k, v [T,KV*HD];
//              probs [B,NH,S,S]; att_out [T,NH*HD]; x_mid, norm2_out [T,H];
//              mlp_pre [T,F] (GPT-2) / [T,2F] (Llama); mlp_act [T,F];
//              norm statistics fp32 [T] (mean: LayerNorm only; rstd)
//   selective  the same without probs (recomputed from q, k in backward)
//   full       x_in only; the layer is recomputed in backward into one
//              shared set of these buffers (counted under buffers)
// With the fused attention core (TrainingShape::attention, the default) q, k,
// v and probs give way to qkv [T, (NH + 2 KV) * HD] (tokens-major, rotary
// applied) and lse fp32 [B, NH, S]; selective stores what none stores (there
// is no S x S tensor to drop), and the buffers lose the score gradient, the
// heads-major copies and gain the cuDNN workspace ("fused attention
// workspace", TrainingShape::attention_workspace bytes).
// LayerActivationBytes() gives the per-layer total for each mode.
//
// Sequence parallelism (TrainingShape::sequence_shards = TP, Korthikanti et
// al. 2022 sec. 4.2.2): the tensors between the TP regions hold T/TP tokens:
// x_in, norm1_out, x_mid, norm2_out and the norm statistics per layer, the
// chunk outputs / x_final, final_norm_out and its statistics, the received
// output gradient and d residual. One [T, H] bf16 buffer ("sequence-parallel
// all-gather", term buffers; the simulator's buffers.tp_buffers) holds the
// gathered norm output entering qkv / fc / the LM head, the gathered output
// gradient before out / proj backward and the gathered d x0 of the embedding
// backward, one at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/parallel_context.h"
#include "executor/param_layout.h"
#include "models/model_spec.h"
#include "common/plan.h"

namespace p3d {

enum class RegionTerm { kWeights, kGradients, kOptimizer, kActivations, kBuffers };
inline constexpr int kRegionTerms = 5;
const char* RegionTermName(RegionTerm term);  // "weights", "gradients", ...

inline constexpr int64_t kArenaAlignBytes = 256;

struct ArenaRegion {
  std::string name;
  RegionTerm term = RegionTerm::kBuffers;
  int64_t offset = 0;  // bytes from the arena base, kArenaAlignBytes-aligned
  int64_t bytes = 0;   // requested size (the region may be followed by padding)
};

// Invariant: regions are disjoint, in increasing offset, each aligned.
class ArenaPlan {
 public:
  // Appends a region and returns its offset. bytes == 0 yields a valid, empty region.
  int64_t Add(std::string name, RegionTerm term, int64_t bytes);
  int64_t total_bytes() const { return total_; }
  // Sum over regions of the term, padding included (so the terms sum to total_bytes()).
  int64_t TermBytes(RegionTerm term) const;
  const std::vector<ArenaRegion>& regions() const { return regions_; }

 private:
  std::vector<ArenaRegion> regions_;
  std::vector<int64_t> padded_;
  int64_t total_ = 0;
};

// Byte offsets of one layer's stored activations (full recompute: all but x_in
// point into the shared recompute set; selective: probs points to scratch).
struct LayerActivationOffsets {
  int64_t x_in = 0, norm1_out = 0, norm1_mean = 0, norm1_rstd = 0, q = 0, k = 0, v = 0;
  int64_t probs = 0, att_out = 0, x_mid = 0, norm2_out = 0, norm2_mean = 0, norm2_rstd = 0;
  int64_t mlp_pre = 0, mlp_act = 0;
  int64_t qkv = 0, lse = 0;  // fused attention core only
};

struct TrainingShape {
  int64_t micro_batch = 1;  // B
  int64_t seq = 0;          // S
  Recompute recompute = Recompute::kNone;
  int64_t logits_chunk = 0;      // tokens per loss chunk; 0 = default (kDefaultLogitsChunk, <= T)
  int64_t attention_blocks = 0;  // causal query blocks per sequence; 0 = DefaultAttentionBlocks(S)
  // Pipeline (executor/host/pipeline_program.h): activation slots (the peak
  // number of (micro-batch, chunk) pairs in flight), each one chunk's stored
  // layer activations (L / chunks layers) and its [T, H] output, shared by
  // all chunks; chunks per rank (VPP); `pipelined` adds the received output
  // gradient. Stored layer activations: activation_slots x L / chunks layers.
  int64_t activation_slots = 1;
  int64_t chunks = 1;
  bool pipelined = false;
  bool vocab_parallel = false;  // TP > 1: vocab-parallel loss statistics
  int64_t sequence_shards = 1;  // TP with sequence parallelism (T % it == 0), else 1
  AttentionImpl attention = AttentionImpl::kFused;
  int64_t attention_workspace = 0;  // fused: FusedAttention::workspace_bytes() for this shape
};

// Causal blocking of the batched attention: the S query positions are cut into
// `blocks` blocks of S/blocks, and block i's GEMMs touch keys [0, (i+1) S/blocks)
// only, so the attention GEMMs and softmax do (blocks+1)/(2 blocks) of the
// full-square work (5/8 for 4 blocks). The default rule, DefaultAttentionBlocks,
// and the loss chunk, kDefaultLogitsChunkTokens, live in common/plan.h so the
// simulator assumes exactly what the executor does.
inline constexpr int64_t kDefaultLogitsChunk = kDefaultLogitsChunkTokens;

// Every byte offset the model binds to a pointer.
struct TrainingMemoryPlan {
  ArenaPlan arena;
  int64_t weights = 0, grads = 0, master = 0, adam_m = 0, adam_v = 0;
  int64_t grad_shard = 0;    // ParamStateSizes::grad_shard_elements fp32 (ZeRO-2/3)
  int64_t grad_staging = 0;  // ParamStateSizes::grad_staging_elements fp32 (ZeRO-2/3, DP > 1)
  int64_t zero3_gather = 0;  // ParamStateSizes::gather_elements bf16 (ZeRO-3, DP > 1)
  // layers[slot * Lc + j]: activations of layer j of the chunk held in
  // activation slot `slot` (Lc = L / chunks layers per chunk; layer l of the
  // rank is layer l % Lc of chunk l / Lc). With one chunk: layers[slot * L + l].
  std::vector<LayerActivationOffsets> layers;
  // chunk_output[slot]: the last layer output of the chunk held in the slot
  // (the send-forward source; x_final == chunk_output[0]).
  std::vector<int64_t> chunk_output;
  int64_t grad_output = 0;  // pipeline: received d chunk output [T, H] bf16
  int64_t loss_stats = 0;   // TP: 3 * logits_chunk fp32 (vocab-parallel loss)
  int64_t x_final = 0, final_norm_out = 0, final_mean = 0, final_rstd = 0;
  int64_t qkv_tokens = 0, o_heads = 0, branch = 0, dres = 0, dmlp_act = 0, dmlp_pre = 0;
  int64_t dqkv_heads = 0, dprobs = 0;
  int64_t attention_workspace = 0;  // fused: the cuDNN graphs' workspace
  int64_t sp_gather = 0;  // sequence parallel: the [T, H] all-gather target
  int64_t logits = 0, dlogits = 0, losses = 0, scalars = 0, norm_partials = 0, column_partials = 0;
  int64_t tokens = 0, targets = 0, bucket_token = 0, bucket_offset = 0, positions = 0;
  int64_t rope_cos = 0, rope_sin = 0, workspace = 0;
  int64_t logits_chunk = 0;      // tokens per loss chunk actually used
  int64_t logits_ld = 0;         // row stride of the logits chunk: PaddedVocab(V)
  int64_t attention_blocks = 1;  // causal query blocks per sequence actually used
};

// Scalars region layout (fp32): [0] loss sum, [1] grad norm, [2] clip scale.
inline constexpr int kScalarLossSum = 0, kScalarGradNorm = 1, kScalarClipScale = 2;

// Per-layer stored-activation bytes for the mode (what the simulator's
// activation term should count per layer on one GPU).
int64_t LayerActivationBytes(const ModelSpec& model, const LocalShape& local,
                             const TrainingShape& shape);

// Sizes of the parameter-state buffers under ZeRO (executor/zero_layout.h).
// Weights (bf16) span the whole flat layout ("weights (bf16)", term weights;
// ZeRO-1/2 all-gather into it in place), except with ZeRO-3 at DP > 1: there
// it holds this rank's shard (ZeroLayout::local_numel elements) and each unit
// is all-gathered before use into the "ZeRO-3 gather (bf16)" region (term
// buffers, WeightGather: two ring slots of the largest unit + a dedicated
// buffer for a tied embedding). The fp32
// gradients of a micro-batch's backward accumulate in the whole-layout
// "gradients (fp32)" buffer (term gradients), except with ZeRO-2/3 at DP > 1:
// there each unit accumulates in the "gradient staging (fp32)" region (term
// buffers, GradStaging: two ring slots of the largest layer unit + dedicated
// buffers), is reduce-scattered into the "gradient shard (fp32)" (term
// gradients) and re-zeroed, and the whole-layout buffer is empty.
struct ParamStateSizes {
  int64_t optimizer_elements = -1;    // master, m, v each; -1: the whole layout
  int64_t grad_shard_elements = 0;    // fp32 reduced-gradient shard (ZeRO-2/3), else 0
  int64_t grad_staging_elements = 0;  // > 0: GradStaging::total_elements, no whole-layout buffer
  int64_t weight_elements = -1;       // bf16 weights; -1: the whole layout
  int64_t gather_elements = 0;        // bf16 ZeRO-3 gather ring: WeightGather's total_elements
};

// Errors: "rule tokens % tp" (sequence_shards not dividing B*S), seq % 8, head_dim % 8, hidden % 8,
// ffn % 8 (vector-width rules of the kernels), seq > max_positions for learned positions,
// non-positive sizes, attention_blocks not dividing S into blocks that are multiples of 8.
StatusOr<TrainingMemoryPlan> PlanTrainingMemory(const ModelSpec& model, const LocalShape& local,
                                                const ParamLayout& params,
                                                const TrainingShape& shape, int64_t workspace_bytes,
                                                const ParamStateSizes& states = {});

}  // namespace p3d
