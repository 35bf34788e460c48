// Elementwise kernels: residual add, fp32 -> bf16 cast, deterministic
// initialisation (counter-based normal draws, executor/rng.h) and fills.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

// out = a + b (bf16, fp32 arithmetic); n % 8 == 0; out may alias a or b.
Status ResidualAdd(const bf16* a, const bf16* b, bf16* out, int64_t n, cudaStream_t stream);

// out[i] = bf16(in[i]), round to nearest even.
Status CastToBf16(const float* in, bf16* out, int64_t n, cudaStream_t stream);

// out[i] = stddev * N(0,1) draw for (seed, stream_id, i): Box-Muller on
// TwoUniforms(RandomBits(seed, stream_id, i)), cosine branch.
Status InitNormal(float* out, int64_t n, float stddev, uint64_t seed, uint64_t stream_id,
                  cudaStream_t stream);

// out[i] = value.
Status Fill(float* out, int64_t n, float value, cudaStream_t stream);

}  // namespace p3d
