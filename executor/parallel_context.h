// ParallelContext: what part of the model this GPU holds, and the hook through
// which tensor-parallel layers reduce their partial results.
//
// Shard sizes follow Megatron: attention heads, kv heads, FFN columns and the
// vocabulary are split TP ways (column-parallel QKV / fc / gate-up / LM head,
// row-parallel output projection / down projection); a pipeline stage holds the
// contiguous layer range [first_layer, first_layer + layers), the embedding only
// on stage 0 and the final norm + head + loss only on the last stage.
//
// Layers are written against local sizes; executor/tensor_parallel.h holds the
// TP collectives and vocab-parallel kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"
#include "models/model_spec.h"

namespace p3d {

struct ParallelContext {
  int tp = 1, tp_rank = 0;
  int pp = 1, pp_rank = 0;
  // vpp == 1: the stage holds layers [first_layer, first_layer + layers).
  // vpp > 1 (interleaved): `layers` local layers in vpp chunks of layers/vpp;
  // local chunk c holds model chunk c * pp + pp_rank of an even split
  // (simulator/schedule.h's convention); first_layer is unused.
  int vpp = 1;
  int64_t first_layer = 0;
  int64_t layers = 0;  // layers on this stage (all chunks)
  // Sequence parallelism over the TP group (tp > 1; executor/tensor_parallel.h):
  // the residual stream and norms hold this rank's T/TP token slice.
  bool sequence_parallel = false;
  bool has_embedding() const { return pp_rank == 0; }
  bool has_head() const { return pp_rank == pp - 1; }
  // Model layer index of local layer `local`.
  int64_t GlobalLayer(int64_t local) const {
    if (vpp == 1) return first_layer + local;
    const int64_t per_chunk = layers / vpp;
    return (local / per_chunk * pp + pp_rank) * per_chunk + local % per_chunk;
  }
};

// Sizes of this GPU's shard of every layer (B and S are not sharded here).
struct LocalShape {
  int64_t layers = 0;    // on this stage
  int64_t hidden = 0;    // H (not sharded)
  int64_t heads = 0;     // NH / TP
  int64_t kv_heads = 0;  // KV / TP
  int64_t head_dim = 0;  // HD
  int64_t ffn = 0;       // F / TP
  // Vocab-parallel embedding / head (Megatron): V is padded to Vp, the next
  // multiple of kVocabShardAlign * TP, and TP rank t owns global rows
  // [t Vp/TP, (t+1) Vp/TP); `vocab` of them are real (< V), the rest padding.
  // TP = 1: vocab_begin = 0, vocab = V.
  int64_t vocab = 0;        // real vocabulary rows of this rank's shard
  int64_t vocab_begin = 0;  // first global vocabulary row of the shard
  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
  int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
};

// Rows per TP rank are a multiple of this (as Megatron's make-vocab-size-
// divisible-by, 128 there; 64 here, the executor's vocabulary row padding).
inline constexpr int64_t kVocabShardAlign = 64;

// Single-stage context holding all of `model`'s layers (one GPU).
ParallelContext SingleGpuContext(const ModelSpec& model);

// Errors name the rule: "heads % tp", "kv_heads % tp", "ffn % tp", "vocab rows"
// (a TP rank whose vocabulary shard holds no real row), "layer range" (stage
// range outside [0, L)).
StatusOr<LocalShape> ShardShape(const ModelSpec& model, const ParallelContext& ctx);

// Reduction hook of tensor-parallel layers: the forward output of a
// row-parallel layer and the input gradient of a column-parallel layer are
// partial sums over the TP group and must be all-reduced. With TP = 1 the sum
// over one rank is the identity: SingleGpuTensorParallel does nothing.
class TensorParallelOps {
 public:
  virtual ~TensorParallelOps() = default;
  virtual Status AllReduceSum(bf16* data, int64_t count, cudaStream_t stream) = 0;
};

class SingleGpuTensorParallel final : public TensorParallelOps {
 public:
  Status AllReduceSum(bf16*, int64_t, cudaStream_t) override { return Status::Ok(); }
};

}  // namespace p3d
