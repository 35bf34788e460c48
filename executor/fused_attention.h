// FusedAttention: the causal attention core of one layer on one TP rank as
// cuDNN's fused flash attention (online softmax, no S x S tensor in memory),
// built through the backend graph API (executor/cudnn_graph.h). The
// alternative to AttentionCore (executor/attention_core.h), selected by
// AttentionImpl (common/plan.h).
//
// Layouts (T = B*S tokens, row b*S + s; all bf16 unless noted):
//   qkv, dqkv   tokens-major [T, (NH + 2 KV) * HD]: per token NH query heads,
//               KV key heads, KV value heads (kernels/heads.h); rotary must
//               already be applied to q and k (RotateQkvInPlace)
//   out, d_out  tokens-major [T, NH*HD]
//   stats       fp32 [B, NH, S]: log-sum-exp of each query row's scaled,
//               masked scores, saved by the forward for the backward
// The graphs read q, k, v straight out of qkv through strided descriptors
// (Q [B, NH, S, HD] with strides [S*W, HD, W, 1], W = (NH + 2 KV) * HD) and
// write out / dqkv the same way, so no heads-major copy exists. Query head h
// attends with kv head h / G (G = NH / KV), as in AttentionCore; K and V are
// never repeated.
//
// The graphs (the backend's flash-attention pattern):
//   forward   S = Q K^T * scale; causal mask (row >= col, else -inf);
//             M = rowmax S; E = exp(S - M); Z = rowsum E; stats = M + log Z;
//             O = (E / Z) V
//   backward  D = rowsum(dO * O) (fp32 [B, NH, S], workspace);
//             P = exp(mask(Q K^T * scale - stats)); dV = P^T dO;
//             dS = P * (dO V^T - D) * scale; dK = dS^T Q; dQ = dS K
//             (dQ accumulated in fp32 [B, NH, S, HD] in the workspace;
//             with G > 1, dK and dV summed over each kv head's G query heads)
// workspace_bytes(): what Forward and Backward need, one at a time.
//
// Shape rules (CheckShape): NH % KV == 0; HD % 8 == 0 and HD <= 128; S % 64
// == 0, and S % 128 == 0 on cuDNN <= 9.15 (whose backward engines need a
// padding mask otherwise); pointers 16-byte aligned.
//
// Thread-safety: one object per stream; it owns its cuDNN handle.
#pragma once

#include <cuda_runtime.h>
#include <cudnn_graph.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "executor/attention_core.h"
#include "executor/cudnn_graph.h"
#include "executor/dtype.h"

namespace p3d {

class FusedAttention {
 public:
  // Builds and finalizes both execution plans for the shape (seconds: the
  // engines compile at finalize). shape.blocks is ignored.
  static StatusOr<std::unique_ptr<FusedAttention>> Create(const AttentionCoreShape& shape,
                                                          cudaStream_t stream);
  ~FusedAttention();
  FusedAttention(const FusedAttention&) = delete;
  FusedAttention& operator=(const FusedAttention&) = delete;

  // The rules above, checked without a GPU ("FusedAttention: ..." messages).
  static Status CheckShape(const AttentionCoreShape& shape);
  // The backward's fp32 intermediates in the workspace: D [B, NH, S] and the
  // dQ accumulator [B, NH, S, HD] (what the simulator adds to the engine's own).
  static int64_t BackwardScratchBytes(const AttentionCoreShape& shape);

  int64_t workspace_bytes() const;
  int64_t forward_engine_workspace() const { return fwd_.workspace_bytes(); }
  int64_t backward_engine_workspace() const { return bwd_.workspace_bytes(); }
  // "forward: engine 5, workspace 0 B; backward: engine 6, workspace ... B".
  std::string Describe() const;

  // qkv -> out, stats.
  Status Forward(const bf16* qkv, bf16* out, float* stats, void* workspace) const;
  // d_out -> dqkv (all of it written), from the forward's qkv, out and stats.
  Status Backward(const bf16* qkv, const bf16* out, const bf16* d_out, const float* stats,
                  bf16* dqkv, void* workspace) const;

 private:
  FusedAttention(const AttentionCoreShape& shape, cudaStream_t stream)
      : shape_(shape), stream_(stream) {}
  Status BuildForward();
  Status BuildBackward();

  AttentionCoreShape shape_;
  cudaStream_t stream_;
  cudnnHandle_t handle_ = nullptr;
  // Host scalars passed by value at execution.
  float scale_ = 1.0f, neg_inf_ = 0.0f, one_ = 1.0f;
  GraphPlan fwd_, bwd_;
  struct ForwardUids {
    int64_t q, k, v, o, stats, scale, neg_inf;
  } fu_{};
  struct BackwardUids {
    int64_t q, k, v, o, d_o, stats, dq, dk, dv, scale, neg_inf, one, softmax_sum, dq_accum;
  } bu_{};
};

}  // namespace p3d
