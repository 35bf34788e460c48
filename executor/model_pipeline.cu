// Model, pipeline and model-parallel parts: activation buffers of a pipeline slot, the forward and
// backward of one pipeline chunk for one micro-batch, and the reductions over the TP x PP
// group (loss, tied embedding, gradient norm).

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

bf16* Model::LayerOutput(int64_t l) {
  const int64_t per_chunk = ChunkLayers();
  if ((l + 1) % per_chunk != 0) return At<bf16>(Acts(l + 1).x_in);
  return ChunkOutput(static_cast<int>(l / per_chunk), static_cast<int>(slot_));
}

// A slot holds one chunk (memory_plan.h), whichever chunk the program put there.
bf16* Model::ChunkInput(int /*chunk*/, int slot) {
  return At<bf16>(plan_.layers[slot * ChunkLayers()].x_in);
}

bf16* Model::ChunkOutput(int /*chunk*/, int slot) { return At<bf16>(plan_.chunk_output[slot]); }

// This rank's token slice with sequence parallelism: stages exchange T/TP rows.
int64_t Model::ActivationElements() const { return StreamTokens() * local_.hidden; }

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
    dp_->BeginPass(Pass::kForward);
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.embedding_unit));
    P3D_RETURN_IF_ERROR(EmbedForward());
  }
  for (int64_t l = chunk * per_chunk; l < (chunk + 1) * per_chunk; ++l) {
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(params_.LayerUnit(l)));
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
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(head));
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
    P3D_RETURN_IF_ERROR(dp_->BeforeUse(unit));
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

// Sequence parallel: each TP rank's norm gradients cover its token slice only
// (after the DP reduction, which commutes with this sum); summed over TP they
// are the full gradients, identical on every TP rank again.
Status Model::SumSequenceParallelGrads() {
  for (const ElementRange& r : sp_grad_ranges_)
    P3D_RETURN_IF_ERROR(tp_.AllReduceSumF32(G(r.begin), r.end - r.begin, stream_));
  return Status::Ok();
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

}  // namespace p3d
