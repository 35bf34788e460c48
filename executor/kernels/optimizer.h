// Optimizer kernels: global gradient norm with clipping, and AdamW.
//
// Clipping (as torch.nn.utils.clip_grad_norm_): norm = ||g||_2 over all
// gradients; scale = min(1, max_norm / (norm + 1e-6)). Both stay on the device
// (no host round trip); AdamW reads the scale.
//
// AdamW (as torch.optim.AdamW, decoupled weight decay), for step t >= 1:
//   g = grad * scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   w = w (1 - lr wd);  w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// on the fp32 master w, then writes bf16(w) to the working weights.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

inline constexpr int kGradNormBlocks = 1024;

// partials: kGradNormBlocks doubles of scratch; norm_out, scale_out: 1 float each.
Status GradNormClip(const float* grads, int64_t n, float max_norm, double* partials,
                    float* norm_out, float* scale_out, cudaStream_t stream);

// The two halves of GradNormClip, for sharded gradients: each rank writes the
// partial sums of squares of its shard (kGradNormBlocks doubles), the ranks
// sum the partials element-wise (an all-reduce), and ClipScaleFromPartials
// reduces them in the same fixed tree.
Status GradSquaredSumPartials(const float* grads, int64_t n, double* partials, cudaStream_t stream);
Status ClipScaleFromPartials(const double* partials, float max_norm, float* norm_out,
                             float* scale_out, cudaStream_t stream);

// dst[i] += src[i] (fp32), i < n: accumulating a reduced gradient shard.
Status AddF32(const float* src, float* dst, int64_t n, cudaStream_t stream);

struct AdamWHyper {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
  int64_t step = 1;  // t, 1-based
};

// Updates n parameters; grad_scale is a device pointer (GradNormClip's scale_out).
Status AdamWUpdate(const float* grads, const float* grad_scale, float* master, float* m, float* v,
                   bf16* weights, int64_t n, const AdamWHyper& h, cudaStream_t stream);

}  // namespace p3d
