// Model: creation, initialisation, one training step (micro-batches, loss, embedding), the
// optimizer step and parameter-buffer access. The layer and pipeline parts are in
// model_layer.cu and model_pipeline.cu; executor/model.h documents the whole.

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "executor/check.h"
#include "executor/comm/communicator.h"
#include "executor/kernels/activation.h"
#include "executor/kernels/column_reduce.h"
#include "executor/kernels/cross_entropy.h"
#include "executor/kernels/elementwise.h"
#include "executor/kernels/embedding.h"
#include "executor/kernels/heads.h"
#include "executor/kernels/norm.h"
#include "executor/kernels/optimizer.h"
#include "executor/kernels/softmax.h"
#include "executor/model.h"
#include "executor/offload/host_optimizer.h"
#include "executor/str_cat.h"
#include "executor/token_buckets.h"
#include "simulator/executor_support.h"

namespace p3d {

Model::Model(const ModelConfig& config, const LocalShape& local, ParamLayout params,
             TrainingMemoryPlan plan, cudaStream_t stream)
    : config_(config),
      local_(local),
      params_(std::move(params)),
      plan_(std::move(plan)),
      stream_(stream) {}

Model::~Model() {
  host_opt_.reset();  // waits for its copies into the arena
  pipeline_.reset();
  matmul_.reset();
  fused_.reset();
  if (norm_scales_) cudaFree(norm_scales_);
  if (tied_exchange_) cudaFree(tied_exchange_);
  if (base_) cudaFree(base_);
}

namespace {

// The model's part of the plan, for the executor-support rules.
Plan PlanOf(const ModelConfig& config) {
  Plan plan;
  plan.dp = config.data.dp;
  plan.zero = config.data.zero;
  plan.tp = config.parallel.tp;
  plan.pp = config.parallel.pp;
  plan.vpp = config.parallel.vpp;
  plan.sequence_parallel = config.parallel.sequence_parallel;
  plan.offload = config.offload;
  return plan;
}

// What Create refuses before planning anything: unsupported plans
// (simulator/executor_support.h) and missing or mismatched communicators.
Status CheckModelConfig(const ModelConfig& config) {
  const ParallelContext& ctx = config.parallel;
  const ModelParallelConfig& mpc = config.model_parallel;
  P3D_RETURN_IF_ERROR(CheckExecutorSupports(PlanOf(config)));
  if ((ctx.tp > 1 && !mpc.tp) || (ctx.pp > 1 && !mpc.pp) || (ctx.tp * ctx.pp > 1 && !mpc.mp))
    return Status::InvalidArgument("executor: tp or pp > 1 needs the TP, PP and MP communicators");
  // All-gather / reduce-scatter order their blocks by communicator rank.
  if (ctx.sequence_parallel && mpc.tp->rank() != ctx.tp_rank)
    return Status::InvalidArgument(StrCat("sequence parallel: TP communicator rank ",
                                          mpc.tp->rank(), " is not tp_rank ", ctx.tp_rank));
  return Status::Ok();
}

// This rank's pipeline program, checked against every rank's program (empty
// with pp == 1).
StatusOr<PipelineProgram> RankProgram(const ModelConfig& config) {
  const ParallelContext& ctx = config.parallel;
  if (ctx.pp == 1) return PipelineProgram();
  const ModelParallelConfig& mpc = config.model_parallel;
  P3D_ASSIGN_OR_RETURN(std::vector<PipelineProgram> all,
                       CompilePipeline(mpc.schedule, ctx.pp, ctx.vpp, mpc.microbatches));
  return std::move(all[ctx.pp_rank]);
}

// The micro-batch shape with what the layout adds to the memory plan.
TrainingShape ShapeFor(const ModelConfig& config, const PipelineProgram& program) {
  const ParallelContext& ctx = config.parallel;
  TrainingShape shape = config.shape;
  shape.activation_slots = ctx.pp > 1 ? program.slots : 1;
  shape.chunks = ctx.vpp;
  shape.pipelined = ctx.pp > 1;
  shape.vocab_parallel = ctx.tp > 1;
  shape.sequence_shards = ctx.sequence_parallel ? ctx.tp : 1;
  return shape;
}

}  // namespace

StatusOr<std::unique_ptr<Model>> Model::Create(const ModelConfig& config, cudaStream_t stream) {
  const DataParallelConfig& dpc = config.data;
  P3D_RETURN_IF_ERROR(CheckModelConfig(config));
  P3D_ASSIGN_OR_RETURN(PipelineProgram program, RankProgram(config));
  P3D_ASSIGN_OR_RETURN(LocalShape local, ShardShape(config.spec, config.parallel));
  P3D_ASSIGN_OR_RETURN(ParamLayout params, BuildParamLayout(config.spec, config.parallel, local,
                                                            dpc.dp * kParamAlignElements));
  P3D_ASSIGN_OR_RETURN(ZeroLayout zero, BuildZeroLayout(params, dpc.zero, dpc.dp, dpc.dp_rank));
  TrainingShape shape = ShapeFor(config, program);
  P3D_ASSIGN_OR_RETURN(GradBuckets buckets, BuildGradBuckets(params, dpc.bucket_bytes));
  ZeroBuffers zb = BuildZeroBuffers(params, zero, buckets, config.offload == Offload::kOptimizer);
  // The fused core's cuDNN plans are built first: their workspace is a region of the arena.
  std::unique_ptr<FusedAttention> fused;
  if (shape.attention == AttentionImpl::kFused) {
    P3D_ASSIGN_OR_RETURN(fused, FusedAttention::Create({shape.micro_batch, shape.seq, local.heads,
                                                        local.kv_heads, local.head_dim, 1},
                                                       stream));
    shape.attention_workspace = fused->workspace_bytes();
  }
  P3D_ASSIGN_OR_RETURN(TrainingMemoryPlan plan,
                       PlanTrainingMemory(config.spec, local, params, shape,
                                          static_cast<int64_t>(Matmul::kWorkspaceBytes), zb.sizes));
  std::unique_ptr<Model> model(
      new Model(config, local, std::move(params), std::move(plan), stream));
  model->fused_ = std::move(fused);
  P3D_RETURN_IF_ERROR(
      model->CreateParallelState(zero, std::move(buckets), std::move(zb), std::move(program)));
  P3D_RETURN_IF_ERROR(model->AllocateArena());
  P3D_RETURN_IF_ERROR(model->BindArena());
  P3D_RETURN_IF_ERROR(model->UploadConstants());
  return StatusOr<std::unique_ptr<Model>>(std::move(model));
}

Status Model::CreateParallelState(const ZeroLayout& zero, GradBuckets buckets, ZeroBuffers buffers,
                                  PipelineProgram program) {
  const ParallelContext& ctx = config_.parallel;
  const ModelParallelConfig& mpc = config_.model_parallel;
  P3D_ASSIGN_OR_RETURN(
      dp_, DataParallel::Create(params_, zero, std::move(buckets), std::move(buffers.staging),
                                std::move(buffers.gather), config_.data.comm, stream_));
  tp_ = TensorParallel(ctx.tp > 1 ? mpc.tp : nullptr);
  if (ctx.pp > 1) {
    P3D_ASSIGN_OR_RETURN(pipeline_, PipelineRunner::Create(program, mpc.pp, stream_));
  }
  const std::vector<NormScale> scales = NormScales(params_, ctx.tp);
  if (!scales.empty()) {
    CUDA_CHECK(cudaMalloc(&norm_scales_, scales.size() * sizeof(NormScale)));
    CUDA_CHECK(cudaMemcpy(norm_scales_, scales.data(), scales.size() * sizeof(NormScale),
                          cudaMemcpyHostToDevice));
    norm_scale_count_ = static_cast<int>(scales.size());
  }
  if (ctx.sequence_parallel) sp_grad_ranges_ = SequenceParallelGradRanges(params_);
  const bool tied_pp =
      ctx.pp > 1 && config_.spec.tie_embeddings && (ctx.has_embedding() || ctx.has_head());
  if (tied_pp)
    CUDA_CHECK(
        cudaMalloc(&tied_exchange_, PaddedVocab(local_.vocab) * local_.hidden * sizeof(float)));
  return Status::Ok();
}

Status Model::AllocateArena() {
  const int64_t bytes = plan_.arena.total_bytes();
  const cudaError_t err = cudaMalloc(&base_, static_cast<size_t>(bytes));
  if (err == cudaSuccess) return Status::Ok();
  base_ = nullptr;
  cudaGetLastError();  // clear the allocation error
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return Status::Infeasible(
      StrCat("executor: the planned arena of ", bytes / 1073741824.0,
             " GiB does not fit: ", free_b / 1073741824.0, " GiB free of ", total_b / 1073741824.0,
             " GiB (", cudaGetErrorString(err), "); try ",
             config_.shape.recompute == Recompute::kFull ? "" : "--recompute full, ",
             "a smaller --micro-batch or --seq, or a larger card"));
}

Status Model::BindArena() {
  dp_->Bind(At<bf16>(plan_.weights), ShardedWeights() ? At<bf16>(plan_.zero3_gather) : nullptr,
            GradRegion(), GradShard() ? At<float>(plan_.grad_shard) : nullptr);
  if (config_.offload == Offload::kOptimizer) {
    P3D_ASSIGN_OR_RETURN(host_opt_,
                         HostOptimizer::Create(zero().local_numel, ZeroDecayRanges(zero()),
                                               {.threads = config_.offload_threads}));
  }
  P3D_ASSIGN_OR_RETURN(matmul_, Matmul::Create(At<void>(plan_.workspace), Matmul::kWorkspaceBytes));
  return Status::Ok();
}

Status Model::UploadConstants() {
  // dlogits columns [V, PaddedVocab(V)) are never written by the loss and must be 0.
  CUDA_CHECK(cudaMemsetAsync(At<char>(plan_.dlogits), 0,
                             plan_.logits_chunk * plan_.logits_ld * sizeof(bf16), stream_));
  if (config_.spec.arch != Arch::kLlama) return Status::Ok();
  std::vector<float> cos_t, sin_t;
  BuildRotaryTables(config_.shape.seq, local_.head_dim, config_.rope_theta, &cos_t, &sin_t);
  CUDA_CHECK(cudaMemcpyAsync(At<float>(plan_.rope_cos), cos_t.data(), cos_t.size() * sizeof(float),
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(At<float>(plan_.rope_sin), sin_t.data(), sin_t.size() * sizeof(float),
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status Model::Sync() const {
  Communicator* mp = config_.model_parallel.mp;
  if (!dp_->active() && mp && config_.parallel.tp * config_.parallel.pp > 1)
    return mp->Wait(stream_);
  return dp_->Sync(stream_);
}

Status Model::Mark(Phase phase) { return timer_ ? timer_->Mark(phase) : Status::Ok(); }

// The full fp32 parameters are built unit by unit where the unit's gradients
// live (G(unit.begin): the whole-layout buffer, or the unit's staging buffer),
// so a ZeRO rank, whose master holds only its slices, can cast all weights
// (ZeRO-3 at DP > 1: its slices into the weight shard) and copy its slices.
// With offload the slices go to the host: from the whole-layout buffer, or
// (staged) collected first in the gradient shard.
Status Model::InitParameters(uint64_t seed) {
  P3D_RETURN_IF_ERROR(dp_->FinishGrads());  // no reduction still reads or zeroes a buffer
  if (config_.parallel.tp > 1 ||
      config_.parallel.pp > 1) {  // never staged ("rule zero-with-tp/pp")
    CUDA_CHECK(cudaMemsetAsync(GradRegion(), 0, GradRegionElements() * sizeof(float), stream_));
    P3D_RETURN_IF_ERROR(InitShardFromFull(seed));
  }
  float* owned =
      host_opt_ ? (GradShard() ? At<float>(plan_.grad_shard) : nullptr) : At<float>(plan_.master);
  size_t tensor = 0;  // tensors and units are both in buffer order
  for (const ParamUnit& u : params_.units) {
    P3D_RETURN_IF_ERROR(InitUnitValues(u, seed, &tensor));
    P3D_RETURN_IF_ERROR(StoreUnitWeights(u, owned));
  }
  return InitOptimizerStates();
}

Status Model::InitUnitValues(const ParamUnit& u, uint64_t seed, size_t* tensor) {
  const bool sliced = config_.parallel.tp > 1 || config_.parallel.pp > 1;
  if (!sliced) CUDA_CHECK(cudaMemsetAsync(G(u.begin), 0, u.size() * sizeof(float), stream_));
  size_t& i = *tensor;
  for (; i < params_.tensors.size() && params_.tensors[i].offset < u.end; ++i) {
    const ParamTensor& t = params_.tensors[i];
    if (sliced || t.init == ParamInit::kZeros) continue;
    if (t.init == ParamInit::kOnes) {
      P3D_RETURN_IF_ERROR(Fill(G(t.offset), t.size(), 1.0f, stream_));
    } else {
      P3D_RETURN_IF_ERROR(InitNormal(G(t.offset), t.size(), t.stddev, seed, i, stream_));
    }
  }
  return Status::Ok();
}

Status Model::StoreUnitWeights(const ParamUnit& u, float* owned) {
  if (!ShardedWeights()) P3D_RETURN_IF_ERROR(CastToBf16(G(u.begin), W(u.begin), u.size(), stream_));
  for (const OwnedSlice& sl : zero().slices) {
    const int64_t b = std::max(sl.begin, u.begin), e = std::min(sl.end, u.end);
    if (b >= e) continue;
    const int64_t local = sl.local + (b - sl.begin);
    if (ShardedWeights()) P3D_RETURN_IF_ERROR(CastToBf16(G(b), OwnedW(b, local), e - b, stream_));
    if (owned)
      CUDA_CHECK(cudaMemcpyAsync(owned + local, G(b), (e - b) * sizeof(float),
                                 cudaMemcpyDeviceToDevice, stream_));
  }
  return Status::Ok();
}

Status Model::InitOptimizerStates() {
  if (host_opt_) {
    const bool staged = GradShard();
    const float* grads = staged ? At<float>(plan_.grad_shard) : GradRegion();
    P3D_RETURN_IF_ERROR(host_opt_->InitMaster(OffloadSlices(grads, staged), stream_));
    return ZeroGrads();
  }
  const int64_t local = zero().local_numel;
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.adam_m), 0, local * sizeof(float), stream_));
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.adam_v), 0, local * sizeof(float), stream_));
  return ZeroGrads();
}

std::vector<OffloadSlice> Model::OffloadSlices(const float* grads, bool grads_local) const {
  std::vector<OffloadSlice> slices =
      ZeroOffloadSlices(zero(), grads, grads_local, At<bf16>(plan_.weights));
  for (size_t i = 0; i < slices.size(); ++i)
    slices[i].device_bf16 = OwnedW(zero().slices[i].begin, zero().slices[i].local);
  return slices;
}

// Each local tensor is cut from the single-GPU tensor of the same name,
// generated whole (same seed and stream id as on one GPU) in a scratch buffer,
// so TP / PP ranks together hold exactly the one-GPU initial weights.
Status Model::InitShardFromFull(uint64_t seed) {
  const ModelSpec& m = config_.spec;
  const ParallelContext one = SingleGpuContext(m);
  P3D_ASSIGN_OR_RETURN(LocalShape one_shape, ShardShape(m, one));
  P3D_ASSIGN_OR_RETURN(ParamLayout full_layout, BuildParamLayout(m, one, one_shape));
  P3D_ASSIGN_OR_RETURN(std::vector<TensorSource> sources,
                       MapShardToFull(m, config_.parallel, local_, params_, full_layout));
  int64_t largest = 0;
  for (const TensorSource& src : sources)
    largest = std::max(largest, full_layout.tensors[src.full_index].size());
  float* scratch = nullptr;
  CUDA_CHECK(cudaMalloc(&scratch, largest * sizeof(float)));
  std::unique_ptr<float, void (*)(float*)> guard(scratch, [](float* p) { cudaFree(p); });
  for (const TensorSource& src : sources) {
    const ParamTensor& t = params_.tensors[src.local_index];
    const ParamTensor& f = full_layout.tensors[src.full_index];
    if (t.init == ParamInit::kZeros) continue;
    if (t.init == ParamInit::kOnes) {
      P3D_RETURN_IF_ERROR(Fill(G(t.offset), t.size(), 1.0f, stream_));
      continue;
    }
    P3D_RETURN_IF_ERROR(InitNormal(scratch, f.size(), f.stddev, seed,
                                   static_cast<uint64_t>(src.full_index), stream_));
    const int64_t cols = t.cols == 0 ? 1 : t.cols;
    for (const ShardBlock& b : src.blocks)
      CUDA_CHECK(cudaMemcpy2DAsync(G(t.offset) + b.dst_row * cols + b.dst_col, cols * sizeof(float),
                                   scratch + b.src_row * src.full_cols + b.src_col,
                                   src.full_cols * sizeof(float), b.cols * sizeof(float), b.rows,
                                   cudaMemcpyDeviceToDevice, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // before the scratch is freed
  return Status::Ok();
}

Status Model::ZeroGrads() {
  CUDA_CHECK(cudaMemsetAsync(GradRegion(), 0, GradRegionElements() * sizeof(float), stream_));
  if (GradShard())
    CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.grad_shard), 0, zero().local_numel * sizeof(float),
                               stream_));
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.scalars), 0, 4 * sizeof(float), stream_));
  return Status::Ok();
}

// Final norm, then per chunk of tokens: logits, fused cross-entropy, and the
// head's backward; finally the final norm's backward into d residual. With
// sequence parallelism x and the final norm are this rank's token slice; the
// norm output is all-gathered for the head and d norm output reduce-scattered.
Status Model::LossForwardBackward(float grad_scale, float* logits_out, const bf16* x) {
  const bool gpt2 = config_.spec.arch == Arch::kGpt2;
  const NormKind norm = gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm;
  const int64_t T = Tokens(), Tl = StreamTokens(), H = local_.hidden;
  const int64_t V = local_.vocab, ld = plan_.logits_ld;
  bf16* xf_local = At<bf16>(plan_.final_norm_out);
  bf16* dxf = At<bf16>(plan_.branch);
  float* logits = At<float>(plan_.logits);
  bf16* dlogits = At<bf16>(plan_.dlogits);
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  NormForwardArgs nf{norm,
                     x,
                     W(params_.final_norm_w),
                     WOpt(params_.final_norm_b),
                     xf_local,
                     gpt2 ? At<float>(plan_.final_mean) : nullptr,
                     At<float>(plan_.final_rstd),
                     Tl,
                     H,
                     config_.norm_eps};
  P3D_RETURN_IF_ERROR(NormForward(nf, stream_));
  const bf16* xf = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(xf_local, &xf));
  for (int64_t c0 = 0; c0 < T; c0 += plan_.logits_chunk) {
    const int64_t rows = std::min(plan_.logits_chunk, T - c0);
    P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
    // Over the padded vocabulary ld = PaddedVocab(V): head rows >= V are zero,
    // so logits there are 0 (ignored by the loss) and dlogits there stay 0.
    MatmulParams p;  // logits [rows, ld] = xf [rows, H] @ head [ld, H]^T, fp32 out
    p.m = rows;
    p.n = ld;
    p.k = H;
    p.a = xf + c0 * H;
    p.b = W(params_.head);
    p.trans_b = true;
    p.d = logits;
    p.d_type = DType::kF32;
    p.ldd = ld;
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
    if (logits_out) {
      CUDA_CHECK(cudaMemcpy2DAsync(logits_out + c0 * V, V * sizeof(float), logits,
                                   ld * sizeof(float), V * sizeof(float), rows,
                                   cudaMemcpyDeviceToHost, stream_));
      CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
    if (tp_.active()) {
      VocabParallelLossArgs ce{logits,
                               At<int32_t>(plan_.targets) + c0,
                               dlogits,
                               At<float>(plan_.losses) + c0,
                               At<float>(plan_.loss_stats),
                               rows,
                               V,
                               ld,
                               local_.vocab_begin,
                               grad_scale};
      P3D_RETURN_IF_ERROR(VocabParallelCrossEntropy(ce, tp_, stream_));
    } else {
      CrossEntropyArgs ce{logits,  At<int32_t>(plan_.targets) + c0,
                          dlogits, At<float>(plan_.losses) + c0,
                          rows,    V,
                          ld,      grad_scale};
      P3D_RETURN_IF_ERROR(CrossEntropyForwardBackward(ce, stream_));
    }
    P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
    p = MatmulParams();  // dxf [rows, H] = dlogits [rows, ld] @ head [ld, H]
    p.m = rows;
    p.n = H;
    p.k = ld;
    p.a = dlogits;
    p.lda = ld;
    p.b = W(params_.head);
    p.d = dxf + c0 * H;
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
    p = MatmulParams();  // dhead [ld, H] += dlogits^T [ld, rows] @ xf [rows, H]
    p.m = ld;
    p.n = H;
    p.k = rows;
    p.a = dlogits;
    p.trans_a = true;
    p.lda = ld;
    p.b = xf + c0 * H;
    p.d = G(params_.head);
    p.d_type = DType::kF32;
    p.beta = 1.0f;
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
  }
  // The head is column-parallel over the vocabulary: dxf is a partial sum.
  bf16* dxf_local = nullptr;
  P3D_RETURN_IF_ERROR(ReduceTokens(dxf, &dxf_local));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(AccumulateLossSum(At<float>(plan_.losses), T,
                                        At<float>(plan_.scalars) + kScalarLossSum, stream_));
  NormBackwardArgs nb{norm,
                      dxf_local,
                      x,
                      W(params_.final_norm_w),
                      gpt2 ? At<float>(plan_.final_mean) : nullptr,
                      At<float>(plan_.final_rstd),
                      nullptr,
                      At<bf16>(plan_.dres),
                      G(params_.final_norm_w),
                      GOpt(params_.final_norm_b),
                      At<float>(plan_.column_partials),
                      Tl,
                      H};
  return NormBackward(nb, stream_);
}

// DataParallel hooks (no-ops on one GPU), the overlap schedule's points:
// ZeRO-3 gathers before each unit's use (prefetching the next), each
// gradient bucket's reduction once its last unit's backward is done.
Status Model::TrainMicroBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                              float grad_scale, PhaseTimer* timer, float* logits_out,
                              bool last_micro) {
  timer_ = timer;
  P3D_RETURN_IF_ERROR(Mark(Phase::kIdle));
  P3D_RETURN_IF_ERROR(UploadBatch(tokens, targets));
  const int emb = params_.embedding_unit, head = params_.head_unit;
  const bool tied = params_.head == params_.wte;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  dp_->BeginPass(Pass::kForward);
  P3D_RETURN_IF_ERROR(dp_->BeforeUse(emb));
  P3D_RETURN_IF_ERROR(EmbedForward());
  for (int64_t l = 0; l < local_.layers; ++l) {
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.LayerUnit(l)));
    P3D_RETURN_IF_ERROR(LayerForward(l, true));
  }
  P3D_RETURN_IF_ERROR(dp_->BeforeUse(head));
  if (tied) P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(emb));
  P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(head));
  P3D_RETURN_IF_ERROR(LossForwardBackward(grad_scale, logits_out, At<bf16>(plan_.x_final)));
  P3D_RETURN_IF_ERROR(dp_->GradsReady(head, last_micro));
  dp_->BeginPass(Pass::kBackward);
  for (int64_t l = local_.layers - 1; l >= 0; --l) {
    const int unit = params_.LayerUnit(l);
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(unit));
    P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(unit));
    P3D_RETURN_IF_ERROR(LayerBackward(l));
    P3D_RETURN_IF_ERROR(dp_->GradsReady(unit, last_micro));
  }
  P3D_RETURN_IF_ERROR(EmbedBackward(last_micro));
  timer_ = nullptr;
  return Status::Ok();
}

// Token (+ position) embedding of the uploaded tokens into the first layer's
// input; vocab-parallel with TP: each rank adds its rows, summed over TP
// (positions added by TP rank 0 only); with sequence parallelism the sum is
// reduce-scattered into this rank's token slice.
Status Model::EmbedForward() {
  const int64_t S = config_.shape.seq, T = Tokens(), H = local_.hidden;
  bf16* x0 = At<bf16>(Acts(0).x_in);
  if (!tp_.active())
    return EmbeddingForward(At<int32_t>(plan_.tokens), W(params_.wte), WOpt(params_.wpe), x0, T, S,
                            H, stream_);
  const bool sp = config_.parallel.sequence_parallel;
  bf16* full = sp ? At<bf16>(plan_.branch) : x0;
  P3D_RETURN_IF_ERROR(VocabParallelEmbeddingForward(At<int32_t>(plan_.tokens), W(params_.wte),
                                                    RowBias(params_.wpe), local_.vocab_begin,
                                                    local_.vocab, full, T, S, H, stream_));
  if (sp) return tp_.ReduceScatterSum(full, x0, StreamTokens() * H, stream_);
  return tp_.AllReduceSum(x0, T * H, stream_);
}

// d residual holds dL/dx0 (all-gathered from the token slices with sequence
// parallelism): embedding gradients (own vocabulary rows only).
Status Model::EmbedBackward(bool last_micro) {
  const int emb = params_.embedding_unit;
  const int64_t S = config_.shape.seq, H = local_.hidden;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(emb));
  const bf16* dres = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(At<bf16>(plan_.dres), &dres));
  if (buckets_ > 0)
    P3D_RETURN_IF_ERROR(
        EmbeddingBackward(dres, At<int32_t>(plan_.bucket_token), At<int32_t>(plan_.bucket_offset),
                          At<int32_t>(plan_.positions), buckets_, H, G(params_.wte), stream_));
  if (params_.wpe >= 0) {
    P3D_RETURN_IF_ERROR(
        PositionEmbeddingBackward(dres, config_.shape.micro_batch, S, H, G(params_.wpe), stream_));
  }
  return dp_->GradsReady(emb, last_micro);
}

Status Model::OptimizerStep(const AdamWHyper& h, float max_grad_norm, PhaseTimer* timer) {
  timer_ = timer;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOptimizer));
  float* scalars = At<float>(plan_.scalars);
  P3D_RETURN_IF_ERROR(dp_->FinishGrads());
  P3D_RETURN_IF_ERROR(SumSequenceParallelGrads());
  P3D_RETURN_IF_ERROR(SumTiedEmbeddingGrads());
  P3D_RETURN_IF_ERROR(ModelParallelReduceLoss(scalars + kScalarLossSum));
  P3D_RETURN_IF_ERROR(dp_->AllReduceSum(scalars + kScalarLossSum, 1));
  const float max_norm = max_grad_norm > 0.0f ? max_grad_norm : FLT_MAX;
  // ZeRO-2/3: the reduced gradients are the owned shard (gaps are zero).
  const bool sharded = GradShard();
  const float* grads = sharded ? At<float>(plan_.grad_shard) : G(0);
  double* partials = At<double>(plan_.norm_partials);
  P3D_RETURN_IF_ERROR(GradSquaredSumPartials(grads, sharded ? zero().local_numel : params_.total,
                                             partials, stream_));
  P3D_RETURN_IF_ERROR(ModelParallelNormPartials(grads, partials));
  P3D_RETURN_IF_ERROR(dp_->ReducePartials(partials, kGradNormBlocks));
  P3D_RETURN_IF_ERROR(ClipScaleFromPartials(partials, max_norm, scalars + kScalarGradNorm,
                                            scalars + kScalarClipScale, stream_));
  if (host_opt_) {
    // The host waits for the reductions through the watchdog, then the CPU
    // steps the shard while its gradients stream down and weights stream up.
    P3D_RETURN_IF_ERROR(Sync());
    P3D_RETURN_IF_ERROR(
        host_opt_->Step(OffloadSlices(grads, sharded), scalars + kScalarClipScale, h, stream_));
    P3D_RETURN_IF_ERROR(dp_->AfterOptimizer());
    timer_ = nullptr;
    return Status::Ok();
  }
  // One launch per owned run of consecutive tensors with equal decay.
  for (const AdamSegment& seg : zero().segments) {
    AdamWHyper hr = h;
    hr.weight_decay = seg.decay ? h.weight_decay : 0.0f;
    const float* g = sharded ? grads + seg.local : G(seg.begin);
    P3D_RETURN_IF_ERROR(
        AdamWUpdate(g, scalars + kScalarClipScale, At<float>(plan_.master) + seg.local,
                    At<float>(plan_.adam_m) + seg.local, At<float>(plan_.adam_v) + seg.local,
                    OwnedW(seg.begin, seg.local), seg.end - seg.begin, hr, stream_));
  }
  P3D_RETURN_IF_ERROR(dp_->AfterOptimizer());
  timer_ = nullptr;
  return Status::Ok();
}

// Drains the stream first (watchdog-bounded with DP): a pageable copy would
// block the host, outside any deadline, behind a collective that never ends.
StatusOr<StepScalars> Model::ReadScalars() {
  float host[4];
  P3D_RETURN_IF_ERROR(Sync());
  CUDA_CHECK(cudaMemcpyAsync(host, At<float>(plan_.scalars), sizeof(host), cudaMemcpyDeviceToHost,
                             stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return StepScalars{host[kScalarLossSum], host[kScalarGradNorm]};
}

namespace {

int64_t BufferElementBytes(ParamBuffer which) { return which == ParamBuffer::kWeights ? 2 : 4; }

int64_t BufferOffset(const TrainingMemoryPlan& p, ParamBuffer which) {
  switch (which) {
    case ParamBuffer::kWeights:
      return p.weights;
    case ParamBuffer::kGrads:
      return p.grads;
    case ParamBuffer::kMaster:
      return p.master;
    case ParamBuffer::kAdamM:
      return p.adam_m;
    case ParamBuffer::kAdamV:
      return p.adam_v;
  }
  return 0;
}

}  // namespace

// On the model's stream (which need not synchronise with the legacy default
// stream), then waited for.
int64_t Model::BufferElements(ParamBuffer which) const {
  const bool optimizer =
      which == ParamBuffer::kMaster || which == ParamBuffer::kAdamM || which == ParamBuffer::kAdamV;
  const bool shard = optimizer || (which == ParamBuffer::kWeights && ShardedWeights());
  return shard ? zero().local_numel : params_.total;
}

int64_t Model::host_optimizer_bytes() const { return host_opt_ ? host_opt_->pinned_bytes() : 0; }

// The offloaded optimizer's state for `which`, or nullptr (on the GPU).
float* Model::HostState(ParamBuffer which) const {
  if (!host_opt_) return nullptr;
  switch (which) {
    case ParamBuffer::kMaster:
      return host_opt_->master().data();
    case ParamBuffer::kAdamM:
      return host_opt_->adam_m().data();
    case ParamBuffer::kAdamV:
      return host_opt_->adam_v().data();
    default:
      return nullptr;
  }
}

// kGrads with ZeRO-2/3 at DP > 1: the gradients are staged per unit and reduced
// into the shard; no whole-layout buffer exists to copy.
Status Model::CheckWholeBuffer(ParamBuffer which) const {
  if (which == ParamBuffer::kGrads && GradShard())
    return Status::InvalidArgument(StrCat(
        "executor: no whole-layout gradient buffer with ZeRO-", zero().zero, " at dp = ", zero().dp,
        " (gradients are staged per unit and reduced into the shard)"));
  return Status::Ok();
}

Status Model::CopyOut(ParamBuffer which, void* host) const {
  P3D_RETURN_IF_ERROR(CheckWholeBuffer(which));
  if (const float* state = HostState(which)) {
    std::memcpy(host, state, BufferElements(which) * sizeof(float));
    return Status::Ok();
  }
  CUDA_CHECK(cudaMemcpyAsync(host, At<char>(BufferOffset(plan_, which)),
                             BufferElements(which) * BufferElementBytes(which),
                             cudaMemcpyDeviceToHost, stream_));
  return Sync();
}

Status Model::CopyIn(ParamBuffer which, const void* host) {
  P3D_RETURN_IF_ERROR(CheckWholeBuffer(which));
  if (float* state = HostState(which)) {
    std::memcpy(state, host, BufferElements(which) * sizeof(float));
    return Status::Ok();
  }
  CUDA_CHECK(cudaMemcpyAsync(At<char>(BufferOffset(plan_, which)), host,
                             BufferElements(which) * BufferElementBytes(which),
                             cudaMemcpyHostToDevice, stream_));
  return Sync();
}

}  // namespace p3d
