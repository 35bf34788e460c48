// AttentionCore: the causal attention of one layer on one TP rank, between the
// q/k/v projection and the output projection, as cuBLASLt batched GEMMs over
// a materialised score matrix (executor/model.h explains the design). Used by
// the model's layer forward/backward and, unchanged, by p3d-calibrate's
// attention probe, so the profile times exactly the kernels a step runs.
//
// Layouts (T = B*S tokens; G = NH/KV query heads per kv head; all bf16):
//   qkv, dqkv   tokens-major [T, (NH + 2 KV) * HD]        (kernels/heads.h)
//   q           heads-major  [B, KV, S, G, HD]
//   k, v        heads-major  [B, KV, S, HD]
//   probs       [B*KV, S, G, S], only each query block's key range written
//   o_heads     [B, KV, S, G*HD]; att_out tokens-major [T, NH*HD]
// Causal blocking: query positions come in `blocks` blocks of Sb = S / blocks;
// block i multiplies its Sb*G query rows by keys [0, (i+1) Sb) only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"
#include "executor/kernels/softmax.h"
#include "executor/matmul.h"

namespace p3d {

struct AttentionCoreShape {
  int64_t batch = 0, seq = 0;                   // B, S
  int64_t heads = 0, kv_heads = 0, head_dim = 0;  // NH, KV on this rank; HD
  int64_t blocks = 1;                           // causal query blocks; divides S
};

// Scratch of the backward (sizes in bf16 elements): d_o [T*NH*HD], dprobs
// [B*NH*S*S], dq/dk/dv contiguous [T*(NH + 2 KV)*HD].
struct AttentionCoreScratch {
  bf16* d_o = nullptr;
  bf16* dprobs = nullptr;
  bf16* dqkv_heads = nullptr;
};

class AttentionCore {
 public:
  // `matmul` and `stream` must outlive the object. Rotary tables [S, HD/2]
  // (fp32) when non-null (Llama), else none (GPT-2).
  AttentionCore(Matmul* matmul, const AttentionCoreShape& shape, const float* rope_cos,
                const float* rope_sin, cudaStream_t stream)
      : matmul_(matmul), shape_(shape), cos_(rope_cos), sin_(rope_sin), stream_(stream) {}

  // qkv -> q, k, v (rotary applied), probs, o_heads, att_out.
  Status Forward(const bf16* qkv, bf16* q, bf16* k, bf16* v, bf16* probs, bf16* o_heads,
                 bf16* att_out) const;
  // probs = causal softmax(q k^T / sqrt(HD)): the part selective recompute re-runs.
  Status Probs(const bf16* q, const bf16* k, bf16* probs) const;
  // d_att_out (tokens-major) -> dqkv (tokens-major), from the stored q, k, v, probs.
  Status Backward(const bf16* d_att_out, const bf16* q, const bf16* k, const bf16* v,
                  const bf16* probs, const AttentionCoreScratch& scratch, bf16* dqkv) const;

 private:
  enum class Gemm {
    kScores,  // [S*G, keys] = A[S*G, HD] B[keys, HD]^T   (q k^T, dO v^T)
    kValues,  // [S*G, HD]   = A[S*G, keys] B[keys, HD]   (P v, dS k)
    kKeys,    // [S, HD]     = A[S*G, S]^T B[S*G, HD]     (dS^T q, P^T dO)
  };
  Status CausalGemm(Gemm kind, const bf16* a, const bf16* b, bf16* d, float alpha) const;
  SoftmaxShape ScoresShape() const;

  Matmul* matmul_;
  AttentionCoreShape shape_;
  const float* cos_;
  const float* sin_;
  cudaStream_t stream_;
};

}  // namespace p3d
