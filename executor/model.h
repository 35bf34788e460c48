// Model: a decoder-only transformer (GPT-2 or Llama style, from ModelSpec)
// training on one GPU: forward, fused chunked loss, backward, AdamW.
//
// Data flow of one micro-batch (pre-norm blocks, T = B*S tokens):
//   x0 = embed(tokens)                          (token + learned positions for GPT-2)
//   per layer: x_mid = x + Wo attn(norm1(x));  x_out = x_mid + mlp(norm2(x_mid))
//   loss = CE(head(final_norm(x_L)), targets), mean over all tokens of the step
// Attention is causal. The default core (ModelConfig::shape.attention = fused)
// is cuDNN's fused flash attention (executor/fused_attention.h): rotary is
// applied in place to the layer's tokens-major qkv, which is stored with the
// output and the fp32 row log-sum-exp; backward re-derives the probabilities
// inside the kernel. The unfused core (--attention unfused) computes it as
// batched GEMMs: probs = softmax(q k^T / sqrt(HD))
// then probs v (see executor/kernels/heads.h for the layout), cut into causal
// query blocks (memory_plan.h DefaultAttentionBlocks): block i of n only touches
// keys of blocks <= i. What the simulator must assume for it: the attention-core
// GEMMs do (n+1)/(2n) of the full S x S work (5/8 at n = 4; model FLOPs still
// count the full square, models/flops.h), they and the softmax are bound by
// reading/writing the bf16 [B, NH, S, S] score matrix, which is materialised
// (stored per layer with recompute=none; one layer's worth otherwise).
//
// Loss: logits are computed kLogitsChunk tokens at a time (TrainingShape::
// logits_chunk, default kDefaultLogitsChunk = 1024): chunk logits fp32 +
// dlogits bf16 = chunk * PaddedVocab(V) * 6 bytes (V = 50257: 295 MiB at 1024),
// and the chunk's head backward runs immediately, so no [T, V] tensor exists.
//
// Recompute (same meaning as common/plan.h Recompute):
//   none       every activation the backward needs is stored
//   selective  unfused core: attention probabilities are not stored; backward
//              recomputes q k^T and the softmax from the stored q, k
//              (Korthikanti et al.). Fused core: as none (qkv, output and
//              lse stored; nothing S x S exists to drop, docs/executor.md)
//   full       only each layer's input is stored; backward re-runs the layer's
//              forward into one shared set of buffers, then runs its backward
//
// Precision: bf16 weights and activations; fp32 GEMM accumulation; fp32
// gradients accumulated across micro-batches; fp32 master weights and Adam
// moments; statistics (norm mean/rstd, softmax, loss) in fp32.
//
// Sequence parallel (ParallelContext::sequence_parallel, tp > 1; executor/
// tensor_parallel.h): x, x_mid, the norms and residual adds work on this TP
// rank's T/TP token slice; the norm output is all-gathered before qkv / fc /
// the LM head and the row-parallel outputs (and the vocab-parallel embedding)
// reduce-scattered into the slice; backward runs the conjugates and sums the
// norms' gradients over TP before the optimizer.
//
// Memory: everything lives in one device arena planned up front
// (executor/memory_plan.h), so memory() lists each region and its term.
//
// Determinism: no atomics in p3d's kernels; with the same seed, data and shapes
// every run produces bit-identical losses and weights, except that the fused
// attention backward accumulates dQ with fp32 atomics over key tiles (exact
// up to two tiles, e.g. S <= 128; docs/executor.md).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "executor/attention_core.h"
#include "executor/data_parallel.h"
#include "executor/fused_attention.h"
#include "executor/kernels/norm.h"
#include "executor/kernels/optimizer.h"
#include "executor/kernels/softmax.h"
#include "executor/matmul.h"
#include "executor/memory_plan.h"
#include "executor/overlap_schedule.h"
#include "executor/parallel_context.h"
#include "executor/param_layout.h"
#include "executor/phase_timer.h"
#include "executor/pipeline_runner.h"
#include "executor/tensor_parallel.h"
#include "models/model_spec.h"
#include "simulator/schedule.h"

namespace p3d {

// Data parallelism of this replica (executor/data_parallel.h).
struct DataParallelConfig {
  int dp = 1, dp_rank = 0;
  int zero = 0;                  // ZeRO stage 0..3
  Communicator* comm = nullptr;  // the DP group; required when dp > 1
  int64_t bucket_bytes = kDefaultGradBucketBytes;  // gradient bucket (overlap_schedule.h)
};

// Tensor and pipeline parallelism of this rank (executor/tensor_parallel.h,
// executor/pipeline_runner.h); the layout itself is ModelConfig::parallel.
struct ModelParallelConfig {
  Communicator* tp = nullptr;  // the TP group; required when tp > 1
  Communicator* pp = nullptr;  // the PP group; required when pp > 1
  Communicator* mp = nullptr;  // TP x PP (same DP rank): the gradient norm; when tp*pp > 1
  ScheduleKind schedule = ScheduleKind::k1F1B;  // interleaved-1f1b when vpp > 1
  int64_t microbatches = 1;                     // per optimizer step per DP rank (the schedule's m)
};

struct ModelConfig {
  ModelSpec spec;
  ParallelContext parallel;  // SingleGpuContext(spec) on one GPU
  DataParallelConfig data;
  ModelParallelConfig model_parallel;
  TrainingShape shape;
  // kOptimizer: this rank's master, Adam m and v (its ZeRO shard) live in
  // pinned host memory and AdamW runs on the CPU with offload_threads threads
  // (0: all; executor/offload/host_optimizer.h); the arena holds no optimizer
  // states. kOptimizerAndParams is refused.
  Offload offload = Offload::kNone;
  int offload_threads = 0;
  // GPT-2's bias + GELU and GELU-gradient, and every bias gradient, run as
  // cuBLASLt GEMM epilogues (executor/matmul.h) instead of separate kernels
  // (--gemm-epilogues on). Off by default until measured on a GPU (docs/executor.md).
  bool gemm_epilogues = false;
  double rope_theta = 10000.0;  // Llama rotary base
  float norm_eps = 1e-5f;
};

// The five flat parameter-state buffers (same element offsets, ParamLayout).
enum class ParamBuffer { kWeights /*bf16*/, kGrads, kMaster, kAdamM, kAdamV /*fp32*/ };

struct StepScalars {
  float loss_sum = 0.0f;   // sum of token losses since ZeroGrads()
  float grad_norm = 0.0f;  // global gradient norm of the last OptimizerStep (before clipping)
};

class HostOptimizer;
struct OffloadSlice;

// A micro-batch of the step for the pipeline: tokens and targets of
// micro-batch `microbatch` (0 .. microbatches-1 of this DP rank).
using MicroBatchFn = std::function<Status(int microbatch, std::vector<int32_t>* tokens,
                                          std::vector<int32_t>* targets)>;

class Model final : public PipelineStage {
 public:
  // Plans memory, allocates the arena, creates the cuBLASLt wrapper. Errors:
  // "rule zero-with-tp/pp" (ZeRO-2/3 with tp or pp > 1), "rule pipeline
  // schedule" (a schedule whose grouped send/recv would deadlock), missing
  // communicators, MoE models, ZeroLayout rules, shape rules of
  // PlanTrainingMemory, out of device memory (with the planned total).
  static StatusOr<std::unique_ptr<Model>> Create(const ModelConfig& config, cudaStream_t stream);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // master <- deterministic init from seed (every DP rank computes the same
  // full parameters and keeps its owned slices); weights <- bf16(full);
  // grads, m, v <- 0.
  Status InitParameters(uint64_t seed);
  // grads <- 0 and loss sum <- 0 (start of an optimizer step).
  Status ZeroGrads();
  // Forward, loss and backward of one micro-batch. tokens/targets: [B*S] host
  // arrays, values in [0, V). Adds the micro-batch's gradients (scaled by
  // grad_scale = d loss / d token loss, 1/(tokens per step) for a mean) into the
  // fp32 gradients and its summed token loss into the loss sum.
  // logits_out (host, nullable): receives the fp32 logits [B*S, V] for verification.
  // last_micro: the step's last micro-batch (ZeRO-0/1 reduce gradients in its backward).
  Status TrainMicroBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                         float grad_scale, PhaseTimer* timer, float* logits_out,
                         bool last_micro = true);
  // Pipeline (pp > 1): every micro-batch of the step, dispatched as this
  // pipeline rank's schedule (BuildSchedule) says; loss and gradients as
  // TrainMicroBatch over all of them. batch: the step's micro-batches.
  Status TrainStepPipelined(const MicroBatchFn& batch, float grad_scale, PhaseTimer* timer);
  // PipelineStage (executor/pipeline_runner.h), driven by TrainStepPipelined.
  Status ForwardChunk(int microbatch, int chunk, int slot) override;
  Status BackwardChunk(int microbatch, int chunk, int slot) override;
  bf16* ChunkInput(int chunk, int slot) override;
  bf16* ChunkOutput(int chunk, int slot) override;
  bf16* GradOutput() override { return At<bf16>(plan_.grad_output); }
  bf16* GradInput() override { return At<bf16>(plan_.dres); }
  int64_t ActivationElements() const override;

  // Clips gradients to max_grad_norm (<= 0: no clipping, norm still computed)
  // and applies AdamW; h.weight_decay applies to tensors with decay = true.
  // With DP: waits for the gradient reductions, sums the loss over the DP
  // group, clips by the norm of the full (reduced) gradient, updates the owned
  // slices and, ZeRO-1/2, all-gathers the weights.
  Status OptimizerStep(const AdamWHyper& h, float max_grad_norm, PhaseTimer* timer);
  // Synchronises the stream and reads the step scalars.
  StatusOr<StepScalars> ReadScalars();

  // Synchronous copies of a whole parameter-state buffer (BufferElements(),
  // bf16 for kWeights, fp32 otherwise) to/from host memory (with offload,
  // master / m / v are the HostOptimizer's). kGrads fails with ZeRO-2/3 at
  // DP > 1: no whole-layout gradient buffer exists there (GradStaging).
  // kWeights with ZeRO-3 at DP > 1 is this rank's shard (as master / m / v).
  Status CopyOut(ParamBuffer which, void* host) const;
  Status CopyIn(ParamBuffer which, const void* host);
  // ParamLayout::total, or ZeroLayout::local_numel for master / m / v (and
  // for the weights with ZeRO-3 at DP > 1).
  int64_t BufferElements(ParamBuffer which) const;

  const ModelConfig& config() const { return config_; }
  const LocalShape& local() const { return local_; }
  const ParamLayout& params() const { return params_; }
  const TrainingMemoryPlan& memory() const { return plan_; }
  const ZeroLayout& zero() const { return dp_->zero(); }
  // Pinned host bytes of the offloaded optimizer (0 without offload).
  int64_t host_optimizer_bytes() const;
  cudaStream_t stream() const { return stream_; }

 private:
  Model(const ModelConfig& config, const LocalShape& local, ParamLayout params,
        TrainingMemoryPlan plan, cudaStream_t stream);
  // Create's steps after the memory plan, in order.
  // The DP / TP / PP machinery and the small device buffers outside the arena
  // (norm scales, the tied-embedding exchange buffer).
  Status CreateParallelState(const ZeroLayout& zero, GradBuckets buckets, ZeroBuffers buffers,
                             PipelineProgram program);
  // The one arena allocation; Infeasible with the planned size when it fails.
  Status AllocateArena();
  // What lives on arena regions: the DP buffers, the offloaded optimizer's
  // staging, cuBLASLt's workspace.
  Status BindArena();
  // Constant contents of arena regions: the zero padding columns of dlogits,
  // the rotary tables (Llama).
  Status UploadConstants();
  // InitParameters' steps per unit (in buffer order; *tensor walks the
  // tensors along): the unit's full fp32 values where its gradients live
  // (skipped with TP / PP: InitShardFromFull wrote them), then its bf16
  // weights and owned fp32 slices (`owned`: master, offload staging or null).
  Status InitUnitValues(const ParamUnit& unit, uint64_t seed, size_t* tensor);
  Status StoreUnitWeights(const ParamUnit& unit, float* owned);
  // Adam moments zero (or the offloaded master from the owned slices).
  Status InitOptimizerStates();
  // Drains the stream, watchdog-bounded whenever any communicator is in use.
  Status Sync() const;

  template <typename T>
  T* At(int64_t byte_offset) const {
    return reinterpret_cast<T*>(base_ + byte_offset);
  }
  // bf16 weight of flat element `elem` as the compute reads it: in the
  // whole-layout weight buffer, or with ZeRO-3 at DP > 1 in its unit's gather
  // buffer (WeightGather; valid between DataParallel::BeforeUse of the unit
  // and the gather of the next unit into the same buffer).
  bf16* W(int64_t elem) const {
    const UnitRing& g = dp_->gather();
    return g.staged() ? At<bf16>(plan_.zero3_gather) + g.Offset(elem)
                      : At<bf16>(plan_.weights) + elem;
  }
  // The stored bf16 weight of owned element `elem` (at `local` in this rank's
  // ZeRO state): what the optimizer and the initialisation write. The shard
  // with ZeRO-3 at DP > 1, else the whole-layout buffer.
  bf16* OwnedW(int64_t elem, int64_t local) const {
    return At<bf16>(plan_.weights) + (ShardedWeights() ? local : elem);
  }
  bool ShardedWeights() const { return dp_->gather().staged(); }
  // Gradient of flat element `elem`: in the whole-layout buffer, or with
  // ZeRO-2/3 at DP > 1 in its unit's staging buffer (GradStaging).
  float* G(int64_t elem) const {
    const GradStaging& st = dp_->staging();
    return st.staged() ? At<float>(plan_.grad_staging) + st.Offset(elem)
                       : At<float>(plan_.grads) + elem;
  }
  const bf16* WOpt(int64_t elem) const { return elem < 0 ? nullptr : W(elem); }
  float* GOpt(int64_t elem) const { return elem < 0 ? nullptr : G(elem); }
  Status Mark(Phase phase);
  float* HostState(ParamBuffer which) const;         // offloaded master / m / v, else nullptr
  Status CheckWholeBuffer(ParamBuffer which) const;  // CopyOut / CopyIn: kGrads exists
  // ZeRO-2/3 with DP > 1: reduced gradients live in the fp32 shard (plan_.grad_shard)
  // and each unit's gradients, before the reduction, in plan_.grad_staging.
  bool GradShard() const { return zero().zero >= 2 && zero().dp > 1; }
  // The fp32 gradient region the backward writes and its length in elements.
  float* GradRegion() const { return At<float>(GradShard() ? plan_.grad_staging : plan_.grads); }
  int64_t GradRegionElements() const {
    return GradShard() ? dp_->staging().total_elements : params_.total;
  }

  Status UploadBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets);
  Status InitShardFromFull(uint64_t seed);  // TP / PP: slices of the single-GPU init
  // The offloaded optimizer's slices (ZeroOffloadSlices) with their stored
  // weights at OwnedW.
  std::vector<OffloadSlice> OffloadSlices(const float* grads, bool grads_local) const;
  // Layer l's activations in the current slot (which holds l's chunk); the
  // tensor layer l writes.
  const LayerActivationOffsets& Acts(int64_t l) const {
    return plan_.layers[slot_ * ChunkLayers() + l % ChunkLayers()];
  }
  bf16* LayerOutput(int64_t l);
  int64_t ChunkLayers() const { return local_.layers / config_.parallel.vpp; }
  // Tokens of the micro-batch (T = B*S) and of this rank's residual stream
  // (T/TP with sequence parallelism, else T).
  int64_t Tokens() const { return config_.shape.micro_batch * config_.shape.seq; }
  int64_t StreamTokens() const {
    return Tokens() / (config_.parallel.sequence_parallel ? config_.parallel.tp : 1);
  }
  // Entering a TP region: with sequence parallelism the [T/TP, H] slice is
  // all-gathered into plan_.sp_gather and *full points there; else *full = slice.
  Status GatherTokens(const bf16* slice, const bf16** full);
  // Leaving a TP region: the partial sums full [T, H] are reduce-scattered in
  // place (sequence parallel; *slice = this rank's block) or all-reduced
  // (*slice = full).
  Status ReduceTokens(bf16* full, bf16** slice);
  // Sequence parallel: the norms' gradients summed over TP (OptimizerStep).
  Status SumSequenceParallelGrads();
  // Row-parallel bias: added by TP rank 0 only (the output is summed over TP).
  const bf16* RowBias(int64_t elem) const {
    return config_.parallel.tp_rank == 0 ? WOpt(elem) : nullptr;
  }
  Status EmbedForward();
  Status EmbedBackward(bool last_micro);
  // Gradient synchronisation TP / PP add to OptimizerStep: the tied
  // embedding's two copies summed, the loss from the last stage, the norm
  // partials over TP x PP with replicated tensors counted once.
  Status ModelParallelReduceLoss(float* loss_sum);
  Status SumTiedEmbeddingGrads();
  Status ModelParallelNormPartials(const float* grads, double* partials);
  // y [rows, out] = x [rows, in] @ w[out, in]^T (+ bias). With gelu_pre (GEMM
  // epilogues on): y = gelu(x w^T + bias) and gelu_pre receives x w^T + bias.
  Status Linear(const bf16* x, const bf16* w, const bf16* bias, bf16* y, int64_t rows, int64_t in,
                int64_t out, bf16* gelu_pre = nullptr);
  // dx = dy @ w (if dx; times gelu'(gelu_pre) when gelu_pre is given: the
  // gradient of the GELU's input); dw += dy^T @ x; db += column sums of dy (if
  // db; with GEMM epilogues the dw GEMM computes them).
  Status LinearBackward(const bf16* dy, const bf16* x, const bf16* w, bf16* dx, float* dw,
                        float* db, int64_t rows, int64_t in, int64_t out,
                        const bf16* gelu_pre = nullptr);
  // The attention core of this rank with the step's shapes and buffers.
  AttentionCore Core() const;
  // Layer l's attention core, forward (qkv in, att_out out; the fused core
  // rotates qkv in place) and backward (d att_out in branch -> dqkv in
  // plan_.qkv_tokens), with whichever implementation the shape selects.
  Status AttentionForward(int64_t l, bf16* qkv);
  Status AttentionBackward(int64_t l, const bf16* d_att_out, bf16* dqkv);
  bool Fused() const { return fused_ != nullptr; }
  // GPT-2's MLP activation runs in the fc GEMMs' epilogues (ModelConfig::gemm_epilogues).
  bool GeluInEpilogue() const {
    return config_.gemm_epilogues && config_.spec.arch == Arch::kGpt2 && local_.ffn % 8 == 0;
  }
  // A layer's two pre-norms (before attention, before the MLP): where their
  // input, parameters, output and saved statistics live (byte offsets / elements).
  enum class PreNorm { kAttention, kMlp };
  struct PreNormSite {
    int64_t x, weight, bias, out, mean, rstd;
  };
  PreNormSite Site(PreNorm which, int64_t layer) const;
  NormForwardArgs PreNormForward(PreNorm which, int64_t layer) const;
  NormBackwardArgs PreNormBackward(PreNorm which, int64_t layer, const bf16* dy) const;
  Status LayerForward(int64_t layer, bool write_output);
  Status LayerBackward(int64_t layer);
  // x: the last layer's output (x_final, or the last chunk's output slot).
  Status LossForwardBackward(float grad_scale, float* logits_out, const bf16* x);

  ModelConfig config_;
  LocalShape local_;
  ParamLayout params_;
  TrainingMemoryPlan plan_;
  cudaStream_t stream_;
  char* base_ = nullptr;
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<FusedAttention> fused_;  // shape.attention == kFused
  std::unique_ptr<DataParallel> dp_;
  std::unique_ptr<HostOptimizer> host_opt_;  // offload == kOptimizer only
  TensorParallel tp_{nullptr};
  std::unique_ptr<PipelineRunner> pipeline_;  // pp > 1
  // Outside the arena (small or TP/PP only): NormScale ranges on the device,
  // the tied-embedding gradient exchange buffer (pp > 1, tied models).
  NormScale* norm_scales_ = nullptr;
  int norm_scale_count_ = 0;
  float* tied_exchange_ = nullptr;
  std::vector<ElementRange> sp_grad_ranges_;  // sequence parallel: norm gradients summed over TP
  int64_t slot_ = 0;                          // activation slot of the chunk being run
  // TrainStepPipelined's state for the stage callbacks.
  const MicroBatchFn* batch_ = nullptr;
  float grad_scale_ = 0.0f;
  std::vector<int32_t> tokens_, targets_;
  PhaseTimer* timer_ = nullptr;  // set during TrainMicroBatch/OptimizerStep when profiling
  int64_t buckets_ = 0;          // distinct tokens of the current micro-batch
};

}  // namespace p3d
