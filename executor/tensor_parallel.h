// Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) for the executor's
// model: what every TP rank holds, how its shard is initialised so that the
// FULL weights equal the single-GPU initialisation, and the vocab-parallel
// embedding and cross-entropy.
//
// Layers (B, S not split; every TP rank sees the same tokens):
//   qkv [(NH+2KV) HD, H]   column-parallel: rank t holds query heads
//                          [t NH/TP, (t+1) NH/TP) and KV groups [t KV/TP, ..),
//                          stored q | k | v like the full tensor
//   out [H, NH HD]         row-parallel: columns of the rank's heads; output
//                          all-reduced (sum) over TP; bias added by rank 0 only
//   fc / gate_up           column-parallel (gate_up: gate rows then up rows of
//                          the rank's F/TP slice); proj / down row-parallel
//   norms, wpe, row biases replicated; their gradients are identical on every
//                          TP rank (computed from identical inputs), no reduction
//   wte / head [V, H]      vocab-parallel: rank t holds LocalShape::vocab rows
//                          from vocab_begin (parallel_context.h)
// Backward: the input gradient of a column-parallel layer (qkv, fc, head) is a
// partial sum over TP and is all-reduced before the norm backward.
//
// Sequence parallel (Korthikanti et al. 2022, sec. 4.2.2; ParallelContext::
// sequence_parallel): between the TP regions the residual stream, the norms
// and the residual adds work on this rank's token slice (SequenceShard: rows
// [r T/TP, (r+1) T/TP) of the token-major [T, H] tensor). Entering a TP region
// (qkv, fc, LM head) the norm output is all-gathered over TP (g); leaving it
// (out, proj, embedding) the partial sums are reduce-scattered into the slice
// (g-bar) instead of all-reduced. Backward: the output gradient is all-gathered
// before a row-parallel layer's backward, the input gradient of a column-
// parallel layer reduce-scattered into the slice, and the stored (sliced) norm
// outputs all-gathered again for the weight gradients. The norms' weight and
// bias gradients are then partial sums over the token slices and are summed
// over TP before the optimizer (SequenceParallelGradRanges); row biases and
// wpe see the gathered gradient and stay identical on every TP rank.
//
// Vocab-parallel embedding: x = sum over TP of (token in my rows ? wte row : 0)
// (+ wpe on rank 0): one all-reduce. Its gradient: each rank adds dx into its
// own rows only (LocalVocabBuckets).
// Vocab-parallel cross-entropy, per chunk of rows: local max -> all-reduce max;
// local sum of exp(x - max) and the target logit (0 unless the target is in my
// rows) -> one all-reduce sum of both; loss = log(sum) + max - target logit
// (identical on every TP rank), dlogits = (softmax - onehot) * grad_scale for
// my columns.
//
// Gradient norm: a replicated tensor's identical copies must count once, so
// NormScales lists the ranges whose squares are scaled (1/TP for TP-replicated
// tensors, 0 for the pipeline's tied head copy) before the partial sums are
// all-reduced over the model-parallel group.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/dtype.h"
#include "executor/parallel_context.h"
#include "executor/param_layout.h"
#include "executor/token_buckets.h"
#include "models/model_spec.h"

namespace p3d {

class Communicator;

// A rectangle copied from the full (single-GPU) tensor into the local one.
struct ShardBlock {
  int64_t src_row = 0, src_col = 0, dst_row = 0, dst_col = 0, rows = 0, cols = 0;
};
// How one local tensor is cut from the single-GPU layout's tensor.
struct TensorSource {
  int local_index = 0;    // into the local ParamLayout::tensors
  int full_index = 0;     // into the single-GPU layout's tensors (its init stream id)
  int64_t full_cols = 0;  // row length of the full tensor (1 for vectors)
  std::vector<ShardBlock> blocks;
};
// Errors: a local tensor with no single-GPU counterpart, or a slice outside it.
StatusOr<std::vector<TensorSource>> MapShardToFull(const ModelSpec& model,
                                                   const ParallelContext& ctx,
                                                   const LocalShape& local,
                                                   const ParamLayout& params,
                                                   const ParamLayout& full);

// Element ranges of the flat buffers whose squared gradients count `scale`
// times in the global gradient norm (all other elements count once).
struct NormScale {
  int64_t begin = 0, end = 0;
  float scale = 1.0f;
};
std::vector<NormScale> NormScales(const ParamLayout& params, int tp);

// This TP rank's token slice of a [tokens, H] tensor under sequence
// parallelism: rows [begin, begin + rows). Errors: "rule tokens % tp" (B*S not
// divisible by TP), a rank outside [0, tp).
struct SequenceSlice {
  int64_t begin = 0, rows = 0;
};
StatusOr<SequenceSlice> SequenceShard(int64_t tokens, int tp, int tp_rank);

// Element ranges [begin, end) of the flat buffers holding the norm weights and
// biases (layer norms and the final norm): with sequence parallelism their
// gradients are partial sums over the token slices and must be summed over TP.
// Tensors adjacent in the layout share one range (the alignment padding
// between them holds zero gradients), in increasing order.
struct ElementRange {
  int64_t begin = 0, end = 0;
};
std::vector<ElementRange> SequenceParallelGradRanges(const ParamLayout& params);

// The positions of tokens in [vocab_begin, vocab_begin + rows), bucketed by
// LOCAL row (token - vocab_begin), in the order of `all`.
TokenBuckets LocalVocabBuckets(const TokenBuckets& all, int64_t vocab_begin, int64_t rows);

// TP collectives on the TP group (nullptr comm: TP = 1, every call is a no-op).
class TensorParallel final : public TensorParallelOps {
 public:
  explicit TensorParallel(Communicator* comm) : comm_(comm) {}
  bool active() const { return comm_ != nullptr; }
  Status AllReduceSum(bf16* data, int64_t count, cudaStream_t stream) override;
  Status AllReduceSumF32(float* data, int64_t count, cudaStream_t stream);
  Status AllReduceMaxF32(float* data, int64_t count, cudaStream_t stream);
  // Sequence parallel: slice [slice_count] = this rank's block of the sum over
  // TP of full [TP * slice_count] (in place when slice == full + rank *
  // slice_count); full [TP * slice_count] = every rank's slice, block r from
  // rank r (in place when slice == full + rank * slice_count). TP = 1: a copy
  // when the pointers differ.
  Status ReduceScatterSum(const bf16* full, bf16* slice, int64_t slice_count, cudaStream_t stream);
  Status AllGather(const bf16* slice, bf16* full, int64_t slice_count, cudaStream_t stream);

 private:
  Communicator* comm_;
};

// x[t,:] = (vocab_begin <= tok[t] < vocab_begin + rows ? wte[tok[t] - vocab_begin,:] : 0)
//          (+ wpe[t % seq,:] when wpe != nullptr). H % 8 == 0.
Status VocabParallelEmbeddingForward(const int32_t* tokens, const bf16* wte, const bf16* wpe,
                                     int64_t vocab_begin, int64_t rows, bf16* x,
                                     int64_t tokens_count, int64_t seq, int64_t hidden,
                                     cudaStream_t stream);

// Vocab-parallel fused cross-entropy of one chunk. logits [rows, ld] fp32,
// columns [0, vocab) real; stats: 3 * rows floats of scratch.
struct VocabParallelLossArgs {
  const float* logits = nullptr;
  const int32_t* targets = nullptr;  // global ids
  bf16* dlogits = nullptr;
  float* losses = nullptr;
  float* stats = nullptr;
  int64_t rows = 0, vocab = 0, ld = 0, vocab_begin = 0;
  float grad_scale = 1.0f;
};
Status VocabParallelCrossEntropy(const VocabParallelLossArgs& a, TensorParallel& tp,
                                 cudaStream_t stream);

// partials[i] += sum over the scaled ranges of (scale - 1) g^2, in the same
// kGradNormBlocks slots as GradSquaredSumPartials (so the sum is the norm with
// every replicated tensor counted once). ranges: device copy of NormScale[n].
Status AdjustNormPartials(const float* grads, const NormScale* ranges, int n, double* partials,
                          cudaStream_t stream);

}  // namespace p3d
