// Attention data layout and rotary position embedding.
//
// The QKV projection writes tokens-major qkv [B, S, (NH + 2*KV) * HD]: per token
// NH query heads, then KV key heads, then KV value heads, HD each. Attention runs
// on heads-major tensors k and v [B, KV, S, HD] and q [B, KV, S, G, HD], where
// query head h = g*G + j (G = NH/KV) sits at [b, g, s, j]: the G query heads
// that share kv head g form one [S*G, HD] matrix whose row s*G + j is position
// s. Every attention GEMM is then a strided-batched product over B*KV, and a
// block of query positions is a contiguous block of rows (causal blocking).
// For G = 1 (no GQA) q is simply [B, NH, S, HD].
//
// Rotary (Llama, rotate-half convention as in HF transformers): for head-dim
// pair (i, i + HD/2), i < HD/2, at position s with angle a = s * theta^(-2i/HD):
//   out_i = x_i cos a - x_{i+HD/2} sin a,   out_{i+HD/2} = x_{i+HD/2} cos a + x_i sin a
// applied to q and k. Tables cos/sin are fp32 [S, HD/2].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

struct HeadShape {
  int64_t batch = 0, seq = 0, heads = 0, kv_heads = 0, head_dim = 0;  // B, S, NH, KV, HD
};

// cos/sin tables [seq, head_dim/2], computed in double then rounded to float.
void BuildRotaryTables(int64_t seq, int64_t head_dim, double theta, std::vector<float>* cos_table,
                       std::vector<float>* sin_table);

// qkv (tokens-major) -> q [B, KV, S, G, HD], k, v [B, KV, S, HD]; rotary applied
// to q and k when cos/sin are non-null. HD even.
Status SplitQkvHeads(const bf16* qkv, bf16* q, bf16* k, bf16* v, const HeadShape& shape,
                     const float* cos_table, const float* sin_table, cudaStream_t stream);

// Backward of SplitQkvHeads: dq, dk, dv (heads-major) -> dqkv (tokens-major),
// applying the inverse rotation when cos/sin are non-null.
Status MergeQkvHeadsGrad(const bf16* dq, const bf16* dk, const bf16* dv, bf16* dqkv,
                         const HeadShape& shape, const float* cos_table, const float* sin_table,
                         cudaStream_t stream);

// Rotary on the tokens-major qkv buffer itself (the fused attention reads it
// there): q and k heads rotated in place, v untouched. inverse = true applies
// the transposed rotation, turning gradients w.r.t. rotated q, k (in dqkv)
// into gradients w.r.t. the projection's q, k. HD even.
Status RotateQkvInPlace(bf16* qkv, const HeadShape& shape, const float* cos_table,
                        const float* sin_table, bool inverse, cudaStream_t stream);

// out[b, c, a, :] = in[b, a, c, :] for in [B, A, C, D]; D % 8 == 0. Moves the
// attention output [B, KV, S, G*HD] to tokens-major [B, S, KV, G*HD] = [B, S, NH*HD]
// and back.
Status SwapAxes12(const bf16* in, bf16* out, int64_t b, int64_t a, int64_t c, int64_t d,
                  cudaStream_t stream);

}  // namespace p3d
