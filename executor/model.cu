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
  if (norm_scales_) cudaFree(norm_scales_);
  if (tied_exchange_) cudaFree(tied_exchange_);
  if (base_) cudaFree(base_);
}

StatusOr<std::unique_ptr<Model>> Model::Create(const ModelConfig& config, cudaStream_t stream) {
  const ParallelContext& ctx = config.parallel;
  const ModelParallelConfig& mpc = config.model_parallel;
  const DataParallelConfig& dpc = config.data;
  if (dpc.dp < 1)
    return Status::InvalidArgument(StrCat("executor: dp = ", dpc.dp, " must be >= 1"));
  if ((ctx.tp > 1 && !mpc.tp) || (ctx.pp > 1 && !mpc.pp) || (ctx.tp * ctx.pp > 1 && !mpc.mp))
    return Status::InvalidArgument("executor: tp or pp > 1 needs the TP, PP and MP communicators");
  if (ctx.tp * ctx.pp > 1 && dpc.zero >= 2)
    return Status::InvalidArgument(
        StrCat("rule zero with tp/pp: ZeRO-", dpc.zero, " with tp=", ctx.tp, " pp=", ctx.pp,
               " is not implemented (sharded gradients and replicated-tensor norms); use "
               "--zero 0 or 1"));
  // The pipeline program of this rank, checked against every rank's program.
  PipelineProgram program;
  if (ctx.pp > 1) {
    P3D_ASSIGN_OR_RETURN(std::vector<PipelineProgram> all,
                         CompilePipeline(mpc.schedule, ctx.pp, ctx.vpp, mpc.microbatches));
    program = std::move(all[ctx.pp_rank]);
  }
  P3D_ASSIGN_OR_RETURN(LocalShape local, ShardShape(config.spec, ctx));
  P3D_ASSIGN_OR_RETURN(ParamLayout params,
                       BuildParamLayout(config.spec, ctx, local, dpc.dp * kParamAlignElements));
  P3D_ASSIGN_OR_RETURN(ZeroLayout zero, BuildZeroLayout(params, dpc.zero, dpc.dp, dpc.dp_rank));
  if (config.offload == Offload::kOptimizerAndParams)
    return Status::InvalidArgument(
        "rule offload=params: this executor offloads the optimizer only (--offload optimizer)");
  const bool offload = config.offload == Offload::kOptimizer;
  TrainingShape shape = config.shape;
  shape.activation_slots = ctx.pp > 1 ? program.slots : 1;
  shape.chunks = ctx.vpp;
  shape.pipelined = ctx.pp > 1;
  shape.vocab_parallel = ctx.tp > 1;
  ParamStateSizes states;
  states.optimizer_elements = offload ? 0 : zero.local_numel;
  // ZeRO-2/3 reduce into a gradient shard; at DP = 1 (nothing to reduce) the
  // gradient buffer is the shard (every slice has local == begin).
  const bool shard = dpc.zero >= 2 && dpc.dp > 1;
  states.grad_shard_elements = shard ? zero.local_numel : 0;
  P3D_ASSIGN_OR_RETURN(TrainingMemoryPlan plan,
                       PlanTrainingMemory(config.spec, local, params, shape,
                                          static_cast<int64_t>(Matmul::kWorkspaceBytes), states));
  std::unique_ptr<Model> model(
      new Model(config, local, std::move(params), std::move(plan), stream));
  P3D_ASSIGN_OR_RETURN(model->dp_, DataParallel::Create(model->params_, zero, dpc.comm, stream));
  model->tp_ = TensorParallel(ctx.tp > 1 ? mpc.tp : nullptr);
  if (ctx.pp > 1) {
    P3D_ASSIGN_OR_RETURN(model->pipeline_, PipelineRunner::Create(program, mpc.pp, stream));
  }
  const std::vector<NormScale> scales = NormScales(model->params_, ctx.tp);
  if (!scales.empty()) {
    CUDA_CHECK(cudaMalloc(&model->norm_scales_, scales.size() * sizeof(NormScale)));
    CUDA_CHECK(cudaMemcpy(model->norm_scales_, scales.data(), scales.size() * sizeof(NormScale),
                          cudaMemcpyHostToDevice));
    model->norm_scale_count_ = static_cast<int>(scales.size());
  }
  const bool tied_pp =
      ctx.pp > 1 && config.spec.tie_embeddings && (ctx.has_embedding() || ctx.has_head());
  if (tied_pp)
    CUDA_CHECK(cudaMalloc(&model->tied_exchange_,
                          PaddedVocab(local.vocab) * local.hidden * sizeof(float)));
  const int64_t bytes = model->plan_.arena.total_bytes();
  cudaError_t err = cudaMalloc(&model->base_, static_cast<size_t>(bytes));
  if (err != cudaSuccess) {
    model->base_ = nullptr;
    cudaGetLastError();  // clear the allocation error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return Status::Infeasible(
        StrCat("executor: the planned arena of ", bytes / 1073741824.0,
               " GiB does not fit: ", free_b / 1073741824.0, " GiB free of ",
               total_b / 1073741824.0, " GiB (", cudaGetErrorString(err), "); try ",
               config.shape.recompute == Recompute::kFull ? "" : "--recompute full, ",
               "a smaller --micro-batch or --seq, or a larger card"));
  }
  model->dp_->Bind(model->W(0), model->G(0),
                   shard ? model->At<float>(model->plan_.grad_shard) : nullptr);
  if (offload) {
    P3D_ASSIGN_OR_RETURN(model->host_opt_,
                         HostOptimizer::Create(zero.local_numel, ZeroDecayRanges(zero),
                                               {.threads = config.offload_threads}));
  }
  // dlogits columns [V, PaddedVocab(V)) are never written by the loss and must be 0.
  CUDA_CHECK(cudaMemsetAsync(model->At<char>(model->plan_.dlogits), 0,
                             model->plan_.logits_chunk * model->plan_.logits_ld * sizeof(bf16),
                             stream));
  P3D_ASSIGN_OR_RETURN(model->matmul_, Matmul::Create(model->At<void>(model->plan_.workspace),
                                                      Matmul::kWorkspaceBytes));
  if (config.spec.arch == Arch::kLlama) {
    std::vector<float> cos_t, sin_t;
    BuildRotaryTables(config.shape.seq, local.head_dim, config.rope_theta, &cos_t, &sin_t);
    CUDA_CHECK(cudaMemcpyAsync(model->At<float>(model->plan_.rope_cos), cos_t.data(),
                               cos_t.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaMemcpyAsync(model->At<float>(model->plan_.rope_sin), sin_t.data(),
                               sin_t.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return StatusOr<std::unique_ptr<Model>>(std::move(model));
}

Status Model::Sync() const {
  Communicator* mp = config_.model_parallel.mp;
  if (!dp_->active() && mp && config_.parallel.tp * config_.parallel.pp > 1)
    return mp->Wait(stream_);
  return dp_->Sync(stream_);
}

Status Model::Mark(Phase phase) { return timer_ ? timer_->Mark(phase) : Status::Ok(); }

// The full fp32 parameters are built in the gradient buffer (as large as the
// layout), so a ZeRO rank, whose master holds only its slices, can cast all
// weights and copy its slices.
Status Model::InitParameters(uint64_t seed) {
  const int64_t n = params_.total;
  float* full = G(0);
  CUDA_CHECK(cudaMemsetAsync(full, 0, n * sizeof(float), stream_));
  const bool sliced = config_.parallel.tp > 1 || config_.parallel.pp > 1;
  if (sliced) P3D_RETURN_IF_ERROR(InitShardFromFull(seed));
  for (size_t i = 0; i < params_.tensors.size() && !sliced; ++i) {
    const ParamTensor& t = params_.tensors[i];
    switch (t.init) {
      case ParamInit::kNormal:
        P3D_RETURN_IF_ERROR(InitNormal(full + t.offset, t.size(), t.stddev, seed, i, stream_));
        break;
      case ParamInit::kOnes:
        P3D_RETURN_IF_ERROR(Fill(full + t.offset, t.size(), 1.0f, stream_));
        break;
      case ParamInit::kZeros:
        break;
    }
  }
  P3D_RETURN_IF_ERROR(CastToBf16(full, W(0), n, stream_));
  if (host_opt_) {
    P3D_RETURN_IF_ERROR(
        host_opt_->InitMaster(ZeroOffloadSlices(zero(), full, false, W(0)), stream_));
    return ZeroGrads();
  }
  for (const OwnedSlice& sl : zero().slices)
    CUDA_CHECK(cudaMemcpyAsync(At<float>(plan_.master) + sl.local, full + sl.begin,
                               sl.size() * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  const int64_t local = zero().local_numel;
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.adam_m), 0, local * sizeof(float), stream_));
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.adam_v), 0, local * sizeof(float), stream_));
  return ZeroGrads();
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
  float* local = G(0);
  for (const TensorSource& src : sources) {
    const ParamTensor& t = params_.tensors[src.local_index];
    const ParamTensor& f = full_layout.tensors[src.full_index];
    if (t.init == ParamInit::kZeros) continue;
    if (t.init == ParamInit::kOnes) {
      P3D_RETURN_IF_ERROR(Fill(local + t.offset, t.size(), 1.0f, stream_));
      continue;
    }
    P3D_RETURN_IF_ERROR(InitNormal(scratch, f.size(), f.stddev, seed,
                                   static_cast<uint64_t>(src.full_index), stream_));
    const int64_t cols = t.cols == 0 ? 1 : t.cols;
    for (const ShardBlock& b : src.blocks)
      CUDA_CHECK(cudaMemcpy2DAsync(
          local + t.offset + b.dst_row * cols + b.dst_col, cols * sizeof(float),
          scratch + b.src_row * src.full_cols + b.src_col, src.full_cols * sizeof(float),
          b.cols * sizeof(float), b.rows, cudaMemcpyDeviceToDevice, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // before the scratch is freed
  return Status::Ok();
}

Status Model::ZeroGrads() {
  CUDA_CHECK(cudaMemsetAsync(G(0), 0, params_.total * sizeof(float), stream_));
  if (GradShard())
    CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.grad_shard), 0, zero().local_numel * sizeof(float),
                               stream_));
  CUDA_CHECK(cudaMemsetAsync(At<float>(plan_.scalars), 0, 4 * sizeof(float), stream_));
  return Status::Ok();
}

Status Model::Linear(const bf16* x, const bf16* w, const bf16* bias, bf16* y, int64_t rows,
                     int64_t in, int64_t out) {
  MatmulParams p;
  p.m = rows;
  p.n = out;
  p.k = in;
  p.a = x;
  p.b = w;
  p.trans_b = true;
  p.d = y;
  p.bias = bias;
  return matmul_->Run(p, stream_);
}

Status Model::LinearBackward(const bf16* dy, const bf16* x, const bf16* w, bf16* dx, float* dw,
                             float* db, int64_t rows, int64_t in, int64_t out) {
  if (dx) {
    MatmulParams p;  // dx [rows, in] = dy [rows, out] @ w [out, in]
    p.m = rows;
    p.n = in;
    p.k = out;
    p.a = dy;
    p.b = w;
    p.d = dx;
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
  }
  MatmulParams g;  // dw [out, in] += dy^T [out, rows] @ x [rows, in]
  g.m = out;
  g.n = in;
  g.k = rows;
  g.a = dy;
  g.trans_a = true;
  g.b = x;
  g.d = dw;
  g.d_type = DType::kF32;
  g.beta = 1.0f;
  P3D_RETURN_IF_ERROR(matmul_->Run(g, stream_));
  if (db) {
    P3D_RETURN_IF_ERROR(
        BiasGradAccumulate(dy, rows, out, At<float>(plan_.column_partials), db, stream_));
  }
  return Status::Ok();
}

// The attention GEMMs, batched over (b, kv head) and cut into causal query
// blocks of Sb = S / attention_blocks positions (memory_plan.h). Per batch
// entry the query side is [S*G, .] (row s*G + j: position s, head j of the
// group, kernels/heads.h) and the key side [S, HD]; block i holds query rows
// [i*Sb*G, (i+1)*Sb*G) and needs keys [0, (i+1)*Sb) only.
Status Model::CausalAttentionGemm(CausalGemm kind, const bf16* a, const bf16* b, bf16* d,
                                  float alpha) {
  const int64_t B = config_.shape.micro_batch, S = config_.shape.seq, HD = local_.head_dim;
  const int64_t G = local_.heads / local_.kv_heads, blocks = plan_.attention_blocks;
  const int64_t Sb = S / blocks;
  for (int64_t i = 0; i < blocks; ++i) {
    MatmulParams p;
    p.alpha = alpha;
    p.batch = static_cast<int>(B * local_.kv_heads);
    switch (kind) {
      case CausalGemm::kScores:  // d[block rows, 0:(i+1)Sb] = a[block rows, HD] b[0:(i+1)Sb, HD]^T
        p.m = Sb * G;
        p.n = (i + 1) * Sb;
        p.k = HD;
        p.a = a + i * Sb * G * HD;
        p.b = b;
        p.trans_b = true;
        p.d = d + i * Sb * G * S;
        p.ldd = S;
        p.stride_a = S * G * HD;
        p.stride_b = S * HD;
        p.stride_d = S * G * S;
        break;
      case CausalGemm::kValues:  // d[block rows, HD] = a[block rows, 0:(i+1)Sb] b[0:(i+1)Sb, HD]
        p.m = Sb * G;
        p.n = HD;
        p.k = (i + 1) * Sb;
        p.a = a + i * Sb * G * S;
        p.lda = S;
        p.b = b;
        p.d = d + i * Sb * G * HD;
        p.stride_a = S * G * S;
        p.stride_b = S * HD;
        p.stride_d = S * G * HD;
        break;
      case CausalGemm::kKeys:  // d[key block i, HD] = a[rows >= i Sb G, key block i]^T b[those
                               // rows, HD]
        p.m = Sb;
        p.n = HD;
        p.k = (S - i * Sb) * G;
        p.a = a + i * Sb * G * S + i * Sb;
        p.trans_a = true;
        p.lda = S;
        p.b = b + i * Sb * G * HD;
        p.d = d + i * Sb * HD;
        p.stride_a = S * G * S;
        p.stride_b = S * G * HD;
        p.stride_d = S * HD;
        break;
    }
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
  }
  return Status::Ok();
}

SoftmaxShape Model::ScoresShape() const {
  const int64_t S = config_.shape.seq;
  return {config_.shape.micro_batch * local_.heads * S, S, local_.heads / local_.kv_heads,
          S / plan_.attention_blocks};
}

// probs = causal softmax(q k^T / sqrt(HD)) over each block's key range.
Status Model::AttentionProbs(const bf16* q, const bf16* k, bf16* probs) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(local_.head_dim));
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kScores, q, k, probs, scale));
  return CausalSoftmaxForward(probs, probs, ScoresShape(), stream_);
}

Status Model::UploadBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets) {
  const int64_t T = config_.shape.micro_batch * config_.shape.seq;
  if (static_cast<int64_t>(tokens.size()) != T || static_cast<int64_t>(targets.size()) != T)
    return Status::InvalidArgument(StrCat("micro-batch has ", tokens.size(), " tokens and ",
                                          targets.size(), " targets; B*S = ", T));
  const int64_t V = config_.spec.vocab;
  for (int64_t i = 0; i < T; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V || targets[i] < 0 || targets[i] >= V)
      return Status::InvalidArgument(StrCat("token id ", tokens[i], " / target ", targets[i],
                                            " at position ", i, " outside the vocabulary [0, ", V,
                                            ")"));
  }
  TokenBuckets b = BuildTokenBuckets(tokens);
  if (config_.parallel.tp > 1) b = LocalVocabBuckets(b, local_.vocab_begin, local_.vocab);
  buckets_ = static_cast<int64_t>(b.token.size());
  CUDA_CHECK(cudaMemcpyAsync(At<int32_t>(plan_.tokens), tokens.data(), T * 4,
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(At<int32_t>(plan_.targets), targets.data(), T * 4,
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(At<int32_t>(plan_.bucket_token), b.token.data(), buckets_ * 4,
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(At<int32_t>(plan_.bucket_offset), b.offset.data(), b.offset.size() * 4,
                             cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(At<int32_t>(plan_.positions), b.positions.data(),
                             b.positions.size() * 4, cudaMemcpyHostToDevice, stream_));
  return Status::Ok();
}

Status Model::LayerForward(int64_t l, bool write_output) {
  const ModelSpec& m = config_.spec;
  const LayerParamOffsets& w = params_.layers[l];
  const LayerActivationOffsets& o = Acts(l);
  const int64_t B = config_.shape.micro_batch, S = config_.shape.seq, T = B * S;
  const int64_t H = local_.hidden, F = local_.ffn, Eq = local_.q_dim();
  const int64_t HD = local_.head_dim, groups = local_.heads / local_.kv_heads;
  const bool gpt2 = m.arch == Arch::kGpt2;
  const NormKind norm = gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm;
  bf16* branch = At<bf16>(plan_.branch);

  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  NormForwardArgs n1{norm,
                     At<bf16>(o.x_in),
                     W(w.norm1_w),
                     WOpt(w.norm1_b),
                     At<bf16>(o.norm1_out),
                     gpt2 ? At<float>(o.norm1_mean) : nullptr,
                     At<float>(o.norm1_rstd),
                     T,
                     H,
                     config_.norm_eps};
  P3D_RETURN_IF_ERROR(NormForward(n1, stream_));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  bf16* qkv = At<bf16>(plan_.qkv_tokens);
  P3D_RETURN_IF_ERROR(
      Linear(At<bf16>(o.norm1_out), W(w.qkv_w), WOpt(w.qkv_b), qkv, T, H, local_.qkv_dim()));

  P3D_RETURN_IF_ERROR(Mark(Phase::kAttention));
  const HeadShape hs{B, S, local_.heads, local_.kv_heads, HD};
  const float* rc = gpt2 ? nullptr : At<float>(plan_.rope_cos);
  const float* rsn = gpt2 ? nullptr : At<float>(plan_.rope_sin);
  P3D_RETURN_IF_ERROR(
      SplitQkvHeads(qkv, At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.v), hs, rc, rsn, stream_));
  P3D_RETURN_IF_ERROR(AttentionProbs(At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.probs)));
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kValues, At<bf16>(o.probs), At<bf16>(o.v),
                                          At<bf16>(plan_.o_heads), 1.0f));
  // [B, KV, S, G*HD] -> tokens-major [B, S, KV, G*HD] = [B, S, NH*HD].
  P3D_RETURN_IF_ERROR(SwapAxes12(At<bf16>(plan_.o_heads), At<bf16>(o.att_out), B, local_.kv_heads,
                                 S, groups * HD, stream_));

  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(Linear(At<bf16>(o.att_out), W(w.out_w), RowBias(w.out_b), branch, T, Eq, H));
  P3D_RETURN_IF_ERROR(tp_.AllReduceSum(branch, T * H, stream_));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(ResidualAdd(At<bf16>(o.x_in), branch, At<bf16>(o.x_mid), T * H, stream_));
  NormForwardArgs n2{norm,
                     At<bf16>(o.x_mid),
                     W(w.norm2_w),
                     WOpt(w.norm2_b),
                     At<bf16>(o.norm2_out),
                     gpt2 ? At<float>(o.norm2_mean) : nullptr,
                     At<float>(o.norm2_rstd),
                     T,
                     H,
                     config_.norm_eps};
  P3D_RETURN_IF_ERROR(NormForward(n2, stream_));

  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  const int64_t pre_cols = gpt2 ? F : 2 * F;
  P3D_RETURN_IF_ERROR(
      Linear(At<bf16>(o.norm2_out), W(w.fc_w), WOpt(w.fc_b), At<bf16>(o.mlp_pre), T, H, pre_cols));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  if (gpt2) {
    P3D_RETURN_IF_ERROR(GeluForward(At<bf16>(o.mlp_pre), At<bf16>(o.mlp_act), T * F, stream_));
  } else {
    P3D_RETURN_IF_ERROR(SwiGluForward(At<bf16>(o.mlp_pre), At<bf16>(o.mlp_act), T, F, stream_));
  }
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(Linear(At<bf16>(o.mlp_act), W(w.proj_w), RowBias(w.proj_b), branch, T, F, H));
  P3D_RETURN_IF_ERROR(tp_.AllReduceSum(branch, T * H, stream_));
  if (!write_output) return Status::Ok();
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  return ResidualAdd(At<bf16>(o.x_mid), branch, LayerOutput(l), T * H, stream_);
}

// On entry d residual holds dL/d(layer output); on exit dL/d(layer input).
Status Model::LayerBackward(int64_t l) {
  const ModelSpec& m = config_.spec;
  const LayerParamOffsets& w = params_.layers[l];
  const LayerActivationOffsets& o = Acts(l);
  const int64_t B = config_.shape.micro_batch, S = config_.shape.seq, T = B * S;
  const int64_t H = local_.hidden, F = local_.ffn, Eq = local_.q_dim(), Ekv = local_.kv_dim();
  const int64_t HD = local_.head_dim, groups = local_.heads / local_.kv_heads;
  const bool gpt2 = m.arch == Arch::kGpt2;
  const NormKind norm = gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm;
  bf16* dres = At<bf16>(plan_.dres);
  bf16* branch = At<bf16>(plan_.branch);
  float* partials = At<float>(plan_.column_partials);

  if (config_.shape.recompute == Recompute::kFull) {
    P3D_RETURN_IF_ERROR(LayerForward(l, /*write_output=*/false));
  }
  // MLP.
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  bf16* dact = At<bf16>(plan_.dmlp_act);
  bf16* dpre = At<bf16>(plan_.dmlp_pre);
  P3D_RETURN_IF_ERROR(LinearBackward(dres, At<bf16>(o.mlp_act), W(w.proj_w), dact, G(w.proj_w),
                                     GOpt(w.proj_b), T, F, H));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  if (gpt2) {
    P3D_RETURN_IF_ERROR(GeluBackward(dact, At<bf16>(o.mlp_pre), dpre, T * F, stream_));
  } else {
    P3D_RETURN_IF_ERROR(SwiGluBackward(dact, At<bf16>(o.mlp_pre), dpre, T, F, stream_));
  }
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  const int64_t pre_cols = gpt2 ? F : 2 * F;
  P3D_RETURN_IF_ERROR(LinearBackward(dpre, At<bf16>(o.norm2_out), W(w.fc_w), branch, G(w.fc_w),
                                     GOpt(w.fc_b), T, H, pre_cols));
  P3D_RETURN_IF_ERROR(tp_.AllReduceSum(branch, T * H, stream_));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  NormBackwardArgs n2{norm,
                      branch,
                      At<bf16>(o.x_mid),
                      W(w.norm2_w),
                      gpt2 ? At<float>(o.norm2_mean) : nullptr,
                      At<float>(o.norm2_rstd),
                      dres,
                      dres,
                      G(w.norm2_w),
                      GOpt(w.norm2_b),
                      partials,
                      T,
                      H};
  P3D_RETURN_IF_ERROR(NormBackward(n2, stream_));

  // Attention.
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(LinearBackward(dres, At<bf16>(o.att_out), W(w.out_w), branch, G(w.out_w),
                                     GOpt(w.out_b), T, Eq, H));
  P3D_RETURN_IF_ERROR(Mark(Phase::kAttention));
  bf16* d_o = At<bf16>(plan_.o_heads);  // dO heads-major [B, KV, S, G*HD]
  P3D_RETURN_IF_ERROR(SwapAxes12(branch, d_o, B, S, local_.kv_heads, groups * HD, stream_));
  if (config_.shape.recompute == Recompute::kSelective) {
    P3D_RETURN_IF_ERROR(AttentionProbs(At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.probs)));
  }
  const bf16* probs = At<bf16>(o.probs);
  bf16* dprobs = At<bf16>(plan_.dprobs);
  bf16* dq = At<bf16>(plan_.dqkv_heads);
  bf16* dk = dq + T * Eq;
  bf16* dv = dk + T * Ekv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  // dP = dO v^T; dS = softmax backward; dq = scale dS k; dk = scale dS^T q; dv = P^T dO.
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kScores, d_o, At<bf16>(o.v), dprobs, 1.0f));
  P3D_RETURN_IF_ERROR(CausalSoftmaxBackward(probs, dprobs, dprobs, ScoresShape(), stream_));
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kValues, dprobs, At<bf16>(o.k), dq, scale));
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kKeys, dprobs, At<bf16>(o.q), dk, scale));
  P3D_RETURN_IF_ERROR(CausalAttentionGemm(CausalGemm::kKeys, probs, d_o, dv, 1.0f));
  const HeadShape hs{B, S, local_.heads, local_.kv_heads, HD};
  const float* rc = gpt2 ? nullptr : At<float>(plan_.rope_cos);
  const float* rsn = gpt2 ? nullptr : At<float>(plan_.rope_sin);
  bf16* dqkv = At<bf16>(plan_.qkv_tokens);
  P3D_RETURN_IF_ERROR(MergeQkvHeadsGrad(dq, dk, dv, dqkv, hs, rc, rsn, stream_));

  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(LinearBackward(dqkv, At<bf16>(o.norm1_out), W(w.qkv_w), branch, G(w.qkv_w),
                                     GOpt(w.qkv_b), T, H, local_.qkv_dim()));
  P3D_RETURN_IF_ERROR(tp_.AllReduceSum(branch, T * H, stream_));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  NormBackwardArgs n1{norm,
                      branch,
                      At<bf16>(o.x_in),
                      W(w.norm1_w),
                      gpt2 ? At<float>(o.norm1_mean) : nullptr,
                      At<float>(o.norm1_rstd),
                      dres,
                      dres,
                      G(w.norm1_w),
                      GOpt(w.norm1_b),
                      partials,
                      T,
                      H};
  return NormBackward(n1, stream_);
}

// Final norm, then per chunk of tokens: logits, fused cross-entropy, and the
// head's backward; finally the final norm's backward into d residual.
Status Model::LossForwardBackward(float grad_scale, float* logits_out, const bf16* x) {
  const bool gpt2 = config_.spec.arch == Arch::kGpt2;
  const NormKind norm = gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm;
  const int64_t T = config_.shape.micro_batch * config_.shape.seq, H = local_.hidden;
  const int64_t V = local_.vocab, ld = plan_.logits_ld;
  bf16* xf = At<bf16>(plan_.final_norm_out);
  bf16* dxf = At<bf16>(plan_.branch);
  float* logits = At<float>(plan_.logits);
  bf16* dlogits = At<bf16>(plan_.dlogits);
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  NormForwardArgs nf{norm,
                     x,
                     W(params_.final_norm_w),
                     WOpt(params_.final_norm_b),
                     xf,
                     gpt2 ? At<float>(plan_.final_mean) : nullptr,
                     At<float>(plan_.final_rstd),
                     T,
                     H,
                     config_.norm_eps};
  P3D_RETURN_IF_ERROR(NormForward(nf, stream_));
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
  P3D_RETURN_IF_ERROR(tp_.AllReduceSum(dxf, T * H, stream_));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(AccumulateLossSum(At<float>(plan_.losses), T,
                                        At<float>(plan_.scalars) + kScalarLossSum, stream_));
  NormBackwardArgs nb{norm,
                      dxf,
                      x,
                      W(params_.final_norm_w),
                      gpt2 ? At<float>(plan_.final_mean) : nullptr,
                      At<float>(plan_.final_rstd),
                      nullptr,
                      At<bf16>(plan_.dres),
                      G(params_.final_norm_w),
                      GOpt(params_.final_norm_b),
                      At<float>(plan_.column_partials),
                      T,
                      H};
  return NormBackward(nb, stream_);
}

// DataParallel hooks (no-ops on one GPU): ZeRO-3 gathers before each unit's
// use (prefetching the next), gradient reductions after each unit's backward.
Status Model::TrainMicroBatch(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                              float grad_scale, PhaseTimer* timer, float* logits_out,
                              bool last_micro) {
  timer_ = timer;
  P3D_RETURN_IF_ERROR(Mark(Phase::kIdle));
  P3D_RETURN_IF_ERROR(UploadBatch(tokens, targets));
  const int emb = params_.embedding_unit, head = params_.head_unit;
  const bool tied = params_.head == params_.wte;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  dp_->BeginPass();
  P3D_RETURN_IF_ERROR(dp_->BeforeUse(emb, params_.LayerUnit(0)));
  P3D_RETURN_IF_ERROR(EmbedForward());
  for (int64_t l = 0; l < local_.layers; ++l) {
    const int next = l + 1 < local_.layers ? params_.LayerUnit(l + 1) : head;
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.LayerUnit(l), next));
    P3D_RETURN_IF_ERROR(LayerForward(l, true));
  }
  P3D_RETURN_IF_ERROR(dp_->BeforeUse(head, -1));
  if (tied) P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(emb));
  P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(head));
  P3D_RETURN_IF_ERROR(LossForwardBackward(grad_scale, logits_out, At<bf16>(plan_.x_final)));
  P3D_RETURN_IF_ERROR(dp_->GradsReady(head, last_micro));
  dp_->BeginPass();
  for (int64_t l = local_.layers - 1; l >= 0; --l) {
    const int unit = params_.LayerUnit(l);
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(unit, l > 0 ? params_.LayerUnit(l - 1) : -1));
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
// (positions added by TP rank 0 only).
Status Model::EmbedForward() {
  const int64_t S = config_.shape.seq, T = config_.shape.micro_batch * S, H = local_.hidden;
  bf16* x0 = At<bf16>(Acts(0).x_in);
  if (!tp_.active())
    return EmbeddingForward(At<int32_t>(plan_.tokens), W(params_.wte), WOpt(params_.wpe), x0, T, S,
                            H, stream_);
  P3D_RETURN_IF_ERROR(VocabParallelEmbeddingForward(At<int32_t>(plan_.tokens), W(params_.wte),
                                                    RowBias(params_.wpe), local_.vocab_begin,
                                                    local_.vocab, x0, T, S, H, stream_));
  return tp_.AllReduceSum(x0, T * H, stream_);
}

// d residual holds dL/dx0: embedding gradients (own vocabulary rows only).
Status Model::EmbedBackward(bool last_micro) {
  const int emb = params_.embedding_unit;
  const int64_t S = config_.shape.seq, H = local_.hidden;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(emb));
  const bf16* dres = At<bf16>(plan_.dres);
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

bf16* Model::LayerOutput(int64_t l) {
  const int64_t per_chunk = ChunkLayers();
  if ((l + 1) % per_chunk != 0) return At<bf16>(Acts(l + 1).x_in);
  return ChunkOutput(static_cast<int>(l / per_chunk), static_cast<int>(slot_));
}

bf16* Model::ChunkInput(int chunk, int slot) {
  return At<bf16>(plan_.layers[slot * local_.layers + chunk * ChunkLayers()].x_in);
}

bf16* Model::ChunkOutput(int chunk, int slot) {
  return At<bf16>(plan_.chunk_output[slot * config_.parallel.vpp + chunk]);
}

int64_t Model::ActivationElements() const {
  return config_.shape.micro_batch * config_.shape.seq * local_.hidden;
}

Status Model::TrainStepPipelined(const MicroBatchFn& batch, float grad_scale, PhaseTimer* timer) {
  if (!pipeline_)
    return Status::InvalidArgument("TrainStepPipelined: pp = 1 (use TrainMicroBatch)");
  timer_ = timer;
  batch_ = &batch;
  grad_scale_ = grad_scale;
  Status st = pipeline_->Run(*this);
  batch_ = nullptr;
  slot_ = 0;
  timer_ = nullptr;
  return st;
}

// Forward of local chunk `chunk` (model chunk chunk * PP + pp_rank) for one
// micro-batch: the embedding first on model chunk 0; the input otherwise was
// received into ChunkInput(chunk, slot). The last model chunk stops at its
// output: the loss runs at the start of its backward.
Status Model::ForwardChunk(int mb, int chunk, int slot) {
  slot_ = slot;
  const ParallelContext& ctx = config_.parallel;
  const int64_t per_chunk = ChunkLayers();
  P3D_RETURN_IF_ERROR(Mark(Phase::kIdle));
  if (ctx.has_embedding() && chunk == 0) {
    P3D_RETURN_IF_ERROR((*batch_)(mb, &tokens_, &targets_));
    P3D_RETURN_IF_ERROR(UploadBatch(tokens_, targets_));
    P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
    dp_->BeginPass();
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.embedding_unit, -1));
    P3D_RETURN_IF_ERROR(EmbedForward());
  }
  for (int64_t l = chunk * per_chunk; l < (chunk + 1) * per_chunk; ++l) {
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.LayerUnit(l), -1));
    P3D_RETURN_IF_ERROR(LayerForward(l, true));
  }
  return Status::Ok();
}

// Backward of (mb, chunk): from the loss on the last model chunk, else from
// the received output gradient; ends with d chunk input in d residual (the
// send-backward source) or, on model chunk 0, in the embedding gradients.
Status Model::BackwardChunk(int mb, int chunk, int slot) {
  slot_ = slot;
  const ParallelContext& ctx = config_.parallel;
  const int64_t per_chunk = ChunkLayers();
  const bool last_micro = mb + 1 == config_.model_parallel.microbatches;
  const bool first = ctx.has_embedding() && chunk == 0;
  const bool last = ctx.has_head() && chunk == ctx.vpp - 1;
  P3D_RETURN_IF_ERROR(Mark(Phase::kIdle));
  if (first || last) {
    P3D_RETURN_IF_ERROR((*batch_)(mb, &tokens_, &targets_));
    P3D_RETURN_IF_ERROR(UploadBatch(tokens_, targets_));
  }
  if (last) {
    const int head = params_.head_unit;
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(head, -1));
    P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(head));
    P3D_RETURN_IF_ERROR(LossForwardBackward(grad_scale_, nullptr, ChunkOutput(chunk, slot)));
    P3D_RETURN_IF_ERROR(dp_->GradsReady(head, last_micro));
  } else {
    CUDA_CHECK(cudaMemcpyAsync(At<bf16>(plan_.dres), GradOutput(),
                               ActivationElements() * sizeof(bf16), cudaMemcpyDeviceToDevice,
                               stream_));
  }
  for (int64_t l = (chunk + 1) * per_chunk - 1; l >= chunk * per_chunk; --l) {
    const int unit = params_.LayerUnit(l);
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(unit, -1));
    P3D_RETURN_IF_ERROR(dp_->BeforeGradWrite(unit));
    P3D_RETURN_IF_ERROR(LayerBackward(l));
    P3D_RETURN_IF_ERROR(dp_->GradsReady(unit, last_micro));
  }
  if (first) P3D_RETURN_IF_ERROR(EmbedBackward(last_micro));
  return Status::Ok();
}

// Pipeline: only the last stage computed losses; every stage gets their sum.
Status Model::ModelParallelReduceLoss(float* loss_sum) {
  if (!pipeline_) return Status::Ok();
  return config_.model_parallel.pp->AllReduce(loss_sum, loss_sum, 1, ncclFloat32, ncclSum, stream_);
}

// Pipeline with a tied embedding: the first stage's wte and the last stage's
// head copy receive each other's (DP-reduced) gradient and add it, so both
// copies see the same sum (fp32 a + b == b + a) and stay equal.
Status Model::SumTiedEmbeddingGrads() {
  if (!tied_exchange_) return Status::Ok();
  const ParallelContext& ctx = config_.parallel;
  float* g = G(ctx.has_embedding() ? params_.wte : params_.head);
  const int64_t n = PaddedVocab(local_.vocab) * local_.hidden;
  const int peer = ctx.has_embedding() ? ctx.pp - 1 : 0;
  const P2POp ops[2] = {
      {P2POp::Kind::kSend, peer, g, static_cast<size_t>(n), ncclFloat32},
      {P2POp::Kind::kRecv, peer, tied_exchange_, static_cast<size_t>(n), ncclFloat32}};
  P3D_RETURN_IF_ERROR(config_.model_parallel.pp->SendRecv(ops, stream_));
  return AddF32(tied_exchange_, g, n, stream_);
}

// Replicated tensors count once, then the partial sums of squares are summed
// over the TP x PP group (every rank then clips by the same global norm).
Status Model::ModelParallelNormPartials(const float* grads, double* partials) {
  if (config_.parallel.tp * config_.parallel.pp == 1) return Status::Ok();
  P3D_RETURN_IF_ERROR(
      AdjustNormPartials(grads, norm_scales_, norm_scale_count_, partials, stream_));
  return config_.model_parallel.mp->AllReduce(partials, partials, kGradNormBlocks, ncclFloat64,
                                              ncclSum, stream_);
}

Status Model::OptimizerStep(const AdamWHyper& h, float max_grad_norm, PhaseTimer* timer) {
  timer_ = timer;
  P3D_RETURN_IF_ERROR(Mark(Phase::kOptimizer));
  float* scalars = At<float>(plan_.scalars);
  P3D_RETURN_IF_ERROR(dp_->FinishGrads());
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
    P3D_RETURN_IF_ERROR(host_opt_->Step(ZeroOffloadSlices(zero(), grads, sharded, W(0)),
                                        scalars + kScalarClipScale, h, stream_));
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
                    W(seg.begin), seg.end - seg.begin, hr, stream_));
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
  return optimizer ? zero().local_numel : params_.total;
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

Status Model::CopyOut(ParamBuffer which, void* host) const {
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
