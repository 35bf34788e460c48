// Token + learned-position embedding, forward and backward.
// Shapes: tokens [T] (T = B*S, row t is position t % S), wte [V,H], wpe [P,H], x [T,H].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

// x[t,:] = wte[tokens[t],:] (+ wpe[t % seq,:] when wpe != nullptr). H % 8 == 0.
Status EmbeddingForward(const int32_t* tokens, const bf16* wte, const bf16* wpe, bf16* x,
                        int64_t tokens_count, int64_t seq, int64_t hidden, cudaStream_t stream);

// Token-embedding gradient, deterministic (no atomics): for each bucket u of the
// host-built TokenBuckets (executor/token_buckets.h),
//   dwte[bucket_token[u], :] += sum over p in positions[offset[u] .. offset[u+1]) of dx[p, :]
// summed in ascending position order.
Status EmbeddingBackward(const bf16* dx, const int32_t* bucket_token, const int32_t* bucket_offset,
                         const int32_t* positions, int64_t buckets, int64_t hidden, float* dwte,
                         cudaStream_t stream);

// Position-embedding gradient: dwpe[s,:] += sum_b dx[b*seq + s, :], b ascending.
Status PositionEmbeddingBackward(const bf16* dx, int64_t batch, int64_t seq, int64_t hidden,
                                 float* dwpe, cudaStream_t stream);

}  // namespace p3d
