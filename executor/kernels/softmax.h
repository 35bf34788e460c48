// Causal softmax for the cuBLAS-batched attention (scores -> probabilities and
// back). Scores are bf16 rows of length S, already scaled by 1/sqrt(HD) (the
// QK^T GEMM's alpha), laid out [B*KV, S, G, S]: row r is query position
// (r / G) % S (G query heads share a kv head; G = 1 without GQA).
// Causal blocking: query positions come in blocks of `block` (block | S); a
// row at position p reads and writes only columns [0, end) with
// end = (p / block + 1) * block, the key range its block's GEMMs touch.
// Columns p < j < end are masked: written as exactly 0. Columns >= end are
// neither read nor written. block = S gives plain full-row causal softmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

struct SoftmaxShape {
  int64_t rows = 0;   // B*NH*S
  int64_t seq = 0;    // S, % 8 == 0
  int64_t group = 1;  // G
  int64_t block = 0;  // query block, % 8 == 0, divides S
};

// p[r, j] = exp(x[r, j] - max) / sum over j <= pos; 0 for pos < j < end.
// fp32 arithmetic; in place allowed (p == x).
Status CausalSoftmaxForward(const bf16* x, bf16* p, const SoftmaxShape& shape, cudaStream_t stream);

// ds[r, j] = p[r, j] * (dp[r, j] - sum_k p[r, k] dp[r, k]); 0 for pos < j < end.
// In place allowed (ds == dp).
Status CausalSoftmaxBackward(const bf16* p, const bf16* dp, bf16* ds, const SoftmaxShape& shape,
                             cudaStream_t stream);

}  // namespace p3d
