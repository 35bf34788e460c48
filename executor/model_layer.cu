// Model, one transformer layer: the linear GEMMs and the layer's forward and
// backward (executor/model.h has the data flow; model.cu the rest of the step).

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
#include "executor/model.h"
#include "executor/offload/host_optimizer.h"
#include "executor/str_cat.h"
#include "executor/token_buckets.h"

namespace p3d {

Status Model::Linear(const bf16* x, const bf16* w, const bf16* bias, bf16* y, int64_t rows,
                     int64_t in, int64_t out, bf16* gelu_pre) {
  MatmulParams p;
  p.m = rows;
  p.n = out;
  p.k = in;
  p.a = x;
  p.b = w;
  p.trans_b = true;
  p.d = y;
  p.bias = bias;
  if (gelu_pre) {
    p.epilogue = Epilogue::kGeluAux;
    p.aux = gelu_pre;
  }
  return matmul_->Run(p, stream_);
}

Status Model::LinearBackward(const bf16* dy, const bf16* x, const bf16* w, bf16* dx, float* dw,
                             float* db, int64_t rows, int64_t in, int64_t out,
                             const bf16* gelu_pre) {
  if (dx) {
    MatmulParams p;  // dx [rows, in] = dy [rows, out] @ w [out, in]
    p.m = rows;
    p.n = in;
    p.k = out;
    p.a = dy;
    p.b = w;
    p.d = dx;
    if (gelu_pre) {
      p.epilogue = Epilogue::kDGelu;
      p.aux = const_cast<bf16*>(gelu_pre);  // read only (cuBLASLt's aux input)
    }
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
  }
  float* partials = At<float>(plan_.column_partials);
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
  const bool epilogue = db && config_.gemm_epilogues;
  if (epilogue) g.a_row_sums = partials;  // the bias gradient, written
  P3D_RETURN_IF_ERROR(matmul_->Run(g, stream_));
  if (!db) return Status::Ok();
  if (epilogue) return AccumulateColumnPartials(partials, out, db, stream_, /*slabs=*/1);
  return BiasGradAccumulate(dy, rows, out, partials, db, stream_);
}

Status Model::GatherTokens(const bf16* slice, const bf16** full) {
  if (!config_.parallel.sequence_parallel) {
    *full = slice;
    return Status::Ok();
  }
  bf16* gathered = At<bf16>(plan_.sp_gather);
  P3D_RETURN_IF_ERROR(tp_.AllGather(slice, gathered, StreamTokens() * local_.hidden, stream_));
  *full = gathered;
  return Status::Ok();
}

Status Model::ReduceTokens(bf16* full, bf16** slice) {
  const int64_t H = local_.hidden;
  if (!config_.parallel.sequence_parallel) {
    *slice = full;
    return tp_.AllReduceSum(full, Tokens() * H, stream_);
  }
  const int64_t rows = StreamTokens();
  *slice = full + config_.parallel.tp_rank * rows * H;
  return tp_.ReduceScatterSum(full, *slice, rows * H, stream_);
}

AttentionCore Model::Core() const {
  const AttentionCoreShape shape{
      config_.shape.micro_batch, config_.shape.seq, local_.heads,
      local_.kv_heads,           local_.head_dim,   plan_.attention_blocks};
  const bool gpt2 = config_.spec.arch == Arch::kGpt2;
  return AttentionCore(matmul_.get(), shape, gpt2 ? nullptr : At<float>(plan_.rope_cos),
                       gpt2 ? nullptr : At<float>(plan_.rope_sin), stream_);
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

// The two pre-norms of layer l on this rank's token rows (T/TP with sequence
// parallelism): input, parameters and saved statistics of each.
Model::PreNormSite Model::Site(PreNorm which, int64_t l) const {
  const LayerParamOffsets& w = params_.layers[l];
  const LayerActivationOffsets& o = Acts(l);
  if (which == PreNorm::kAttention)
    return {o.x_in, w.norm1_w, w.norm1_b, o.norm1_out, o.norm1_mean, o.norm1_rstd};
  return {o.x_mid, w.norm2_w, w.norm2_b, o.norm2_out, o.norm2_mean, o.norm2_rstd};
}

NormForwardArgs Model::PreNormForward(PreNorm which, int64_t l) const {
  const PreNormSite n = Site(which, l);
  const bool gpt2 = config_.spec.arch == Arch::kGpt2;
  return {gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm,
          At<bf16>(n.x),
          W(n.weight),
          WOpt(n.bias),
          At<bf16>(n.out),
          gpt2 ? At<float>(n.mean) : nullptr,
          At<float>(n.rstd),
          StreamTokens(),
          local_.hidden,
          config_.norm_eps};
}

// dy: the gradient of the norm's output; the residual-stream gradient (d
// residual) is added into it in place.
NormBackwardArgs Model::PreNormBackward(PreNorm which, int64_t l, const bf16* dy) const {
  const PreNormSite n = Site(which, l);
  const bool gpt2 = config_.spec.arch == Arch::kGpt2;
  bf16* dres = At<bf16>(plan_.dres);
  return {gpt2 ? NormKind::kLayerNorm : NormKind::kRmsNorm,
          dy,
          At<bf16>(n.x),
          W(n.weight),
          gpt2 ? At<float>(n.mean) : nullptr,
          At<float>(n.rstd),
          dres,
          dres,
          G(n.weight),
          GOpt(n.bias),
          At<float>(plan_.column_partials),
          StreamTokens(),
          local_.hidden};
}

Status Model::LayerForward(int64_t l, bool write_output) {
  const ModelSpec& m = config_.spec;
  const LayerParamOffsets& w = params_.layers[l];
  const LayerActivationOffsets& o = Acts(l);
  const int64_t T = Tokens(), Tl = StreamTokens();
  const int64_t H = local_.hidden, F = local_.ffn, Eq = local_.q_dim();
  const bool gpt2 = m.arch == Arch::kGpt2;
  bf16* branch = At<bf16>(plan_.branch);

  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(NormForward(PreNormForward(PreNorm::kAttention, l), stream_));
  const bf16* norm1_full = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(At<bf16>(o.norm1_out), &norm1_full));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  // Fused: qkv is a stored activation of the layer; unfused: a shared buffer
  // the core copies into heads-major q, k, v.
  bf16* qkv = At<bf16>(Fused() ? o.qkv : plan_.qkv_tokens);
  P3D_RETURN_IF_ERROR(Linear(norm1_full, W(w.qkv_w), WOpt(w.qkv_b), qkv, T, H, local_.qkv_dim()));
  P3D_RETURN_IF_ERROR(AttentionForward(l, qkv));

  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(Linear(At<bf16>(o.att_out), W(w.out_w), RowBias(w.out_b), branch, T, Eq, H));
  bf16* attn = nullptr;
  P3D_RETURN_IF_ERROR(ReduceTokens(branch, &attn));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(ResidualAdd(At<bf16>(o.x_in), attn, At<bf16>(o.x_mid), Tl * H, stream_));
  P3D_RETURN_IF_ERROR(NormForward(PreNormForward(PreNorm::kMlp, l), stream_));
  const bf16* norm2_full = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(At<bf16>(o.norm2_out), &norm2_full));

  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  const int64_t pre_cols = gpt2 ? F : 2 * F;
  if (GeluInEpilogue()) {  // mlp_act = gelu(norm2 fc^T + b), mlp_pre its input
    P3D_RETURN_IF_ERROR(Linear(norm2_full, W(w.fc_w), WOpt(w.fc_b), At<bf16>(o.mlp_act), T, H, F,
                               At<bf16>(o.mlp_pre)));
  } else {
    P3D_RETURN_IF_ERROR(
        Linear(norm2_full, W(w.fc_w), WOpt(w.fc_b), At<bf16>(o.mlp_pre), T, H, pre_cols));
    P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
    if (gpt2) {
      P3D_RETURN_IF_ERROR(GeluForward(At<bf16>(o.mlp_pre), At<bf16>(o.mlp_act), T * F, stream_));
    } else {
      P3D_RETURN_IF_ERROR(SwiGluForward(At<bf16>(o.mlp_pre), At<bf16>(o.mlp_act), T, F, stream_));
    }
  }
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(Linear(At<bf16>(o.mlp_act), W(w.proj_w), RowBias(w.proj_b), branch, T, F, H));
  bf16* mlp = nullptr;
  P3D_RETURN_IF_ERROR(ReduceTokens(branch, &mlp));
  if (!write_output) return Status::Ok();
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  return ResidualAdd(At<bf16>(o.x_mid), mlp, LayerOutput(l), Tl * H, stream_);
}

Status Model::AttentionForward(int64_t l, bf16* qkv) {
  const LayerActivationOffsets& o = Acts(l);
  P3D_RETURN_IF_ERROR(Mark(Phase::kAttention));
  if (!Fused()) {
    return Core().Forward(qkv, At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.v), At<bf16>(o.probs),
                          At<bf16>(plan_.o_heads), At<bf16>(o.att_out));
  }
  if (config_.spec.arch == Arch::kLlama) {
    const HeadShape hs{config_.shape.micro_batch, config_.shape.seq, local_.heads,
                       local_.kv_heads, local_.head_dim};
    P3D_RETURN_IF_ERROR(RotateQkvInPlace(qkv, hs, At<float>(plan_.rope_cos),
                                         At<float>(plan_.rope_sin), /*inverse=*/false, stream_));
  }
  return fused_->Forward(qkv, At<bf16>(o.att_out), At<float>(o.lse),
                         At<void>(plan_.attention_workspace));
}

Status Model::AttentionBackward(int64_t l, const bf16* d_att_out, bf16* dqkv) {
  const LayerActivationOffsets& o = Acts(l);
  P3D_RETURN_IF_ERROR(Mark(Phase::kAttention));
  if (!Fused()) {
    const AttentionCore core = Core();
    if (config_.shape.recompute == Recompute::kSelective) {
      P3D_RETURN_IF_ERROR(core.Probs(At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.probs)));
    }
    const AttentionCoreScratch scratch{At<bf16>(plan_.o_heads), At<bf16>(plan_.dprobs),
                                       At<bf16>(plan_.dqkv_heads)};
    return core.Backward(d_att_out, At<bf16>(o.q), At<bf16>(o.k), At<bf16>(o.v),
                         At<bf16>(o.probs), scratch, dqkv);
  }
  P3D_RETURN_IF_ERROR(fused_->Backward(At<bf16>(o.qkv), At<bf16>(o.att_out), d_att_out,
                                       At<float>(o.lse), dqkv,
                                       At<void>(plan_.attention_workspace)));
  if (config_.spec.arch != Arch::kLlama) return Status::Ok();
  const HeadShape hs{config_.shape.micro_batch, config_.shape.seq, local_.heads, local_.kv_heads,
                     local_.head_dim};
  return RotateQkvInPlace(dqkv, hs, At<float>(plan_.rope_cos), At<float>(plan_.rope_sin),
                          /*inverse=*/true, stream_);
}

// On entry d residual holds dL/d(layer output); on exit dL/d(layer input)
// (this rank's token slice with sequence parallelism).
Status Model::LayerBackward(int64_t l) {
  const ModelSpec& m = config_.spec;
  const LayerParamOffsets& w = params_.layers[l];
  const LayerActivationOffsets& o = Acts(l);
  const int64_t T = Tokens(), Tl = StreamTokens();
  const int64_t H = local_.hidden, F = local_.ffn, Eq = local_.q_dim();
  const bool gpt2 = m.arch == Arch::kGpt2;
  bf16* dres = At<bf16>(plan_.dres);
  bf16* branch = At<bf16>(plan_.branch);

  if (config_.shape.recompute == Recompute::kFull) {
    P3D_RETURN_IF_ERROR(LayerForward(l, /*write_output=*/false));
  }
  // MLP.
  const bf16* dy = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(dres, &dy));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  bf16* dact = At<bf16>(plan_.dmlp_act);
  bf16* dpre = At<bf16>(plan_.dmlp_pre);
  if (GeluInEpilogue()) {  // dpre = (dy proj) * gelu'(mlp_pre) in one GEMM
    P3D_RETURN_IF_ERROR(LinearBackward(dy, At<bf16>(o.mlp_act), W(w.proj_w), dpre, G(w.proj_w),
                                       GOpt(w.proj_b), T, F, H, At<bf16>(o.mlp_pre)));
  } else {
    P3D_RETURN_IF_ERROR(LinearBackward(dy, At<bf16>(o.mlp_act), W(w.proj_w), dact, G(w.proj_w),
                                       GOpt(w.proj_b), T, F, H));
    P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
    if (gpt2) {
      P3D_RETURN_IF_ERROR(GeluBackward(dact, At<bf16>(o.mlp_pre), dpre, T * F, stream_));
    } else {
      P3D_RETURN_IF_ERROR(SwiGluBackward(dact, At<bf16>(o.mlp_pre), dpre, T, F, stream_));
    }
  }
  const bf16* norm2_full = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(At<bf16>(o.norm2_out), &norm2_full));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  const int64_t pre_cols = gpt2 ? F : 2 * F;
  P3D_RETURN_IF_ERROR(
      LinearBackward(dpre, norm2_full, W(w.fc_w), branch, G(w.fc_w), GOpt(w.fc_b), T, H, pre_cols));
  bf16* dnorm2 = nullptr;
  P3D_RETURN_IF_ERROR(ReduceTokens(branch, &dnorm2));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  P3D_RETURN_IF_ERROR(NormBackward(PreNormBackward(PreNorm::kMlp, l, dnorm2), stream_));

  // Attention.
  P3D_RETURN_IF_ERROR(GatherTokens(dres, &dy));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(LinearBackward(dy, At<bf16>(o.att_out), W(w.out_w), branch, G(w.out_w),
                                     GOpt(w.out_b), T, Eq, H));
  bf16* dqkv = At<bf16>(plan_.qkv_tokens);
  P3D_RETURN_IF_ERROR(AttentionBackward(l, branch, dqkv));

  const bf16* norm1_full = nullptr;
  P3D_RETURN_IF_ERROR(GatherTokens(At<bf16>(o.norm1_out), &norm1_full));
  P3D_RETURN_IF_ERROR(Mark(Phase::kGemm));
  P3D_RETURN_IF_ERROR(LinearBackward(dqkv, norm1_full, W(w.qkv_w), branch, G(w.qkv_w),
                                     GOpt(w.qkv_b), T, H, local_.qkv_dim()));
  bf16* dnorm1 = nullptr;
  P3D_RETURN_IF_ERROR(ReduceTokens(branch, &dnorm1));
  P3D_RETURN_IF_ERROR(Mark(Phase::kOther));
  return NormBackward(PreNormBackward(PreNorm::kAttention, l, dnorm1), stream_);
}

}  // namespace p3d
