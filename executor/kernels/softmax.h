// Causal softmax for the cuBLAS-batched attention (scores -> probabilities and
// back). Scores are bf16 rows of length S, already scaled by 1/sqrt(HD) (the
// QK^T GEMM's alpha); row r is query position r % S, so the tensor may be any
// stack of [S, S] blocks ([B, NH, S, S] here). Key positions > query position
// are masked: their probability (and gradient) is written as exactly 0.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

// p[r, j] = exp(x[r, j] - max) / sum over j <= r % S; 0 for j > r % S.
// fp32 arithmetic; in place allowed (p == x). S % 8 == 0.
Status CausalSoftmaxForward(const bf16* x, bf16* p, int64_t rows, int64_t seq, cudaStream_t stream);

// ds[r, j] = p[r, j] * (dp[r, j] - sum_k p[r, k] dp[r, k]); 0 where masked.
// In place allowed (ds == dp).
Status CausalSoftmaxBackward(const bf16* p, const bf16* dp, bf16* ds, int64_t rows, int64_t seq,
                             cudaStream_t stream);

}  // namespace p3d
