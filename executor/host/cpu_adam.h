// CPU AdamW for optimizer offload (docs/offload.md): the executor's offloaded
// optimizer step, pure host C++ so CI tests it without a GPU.
//
// The update is the GPU kernel's (executor/kernels/optimizer.h), element by
// element, in the same fp32 operation order, for step t >= 1:
//   g = grad * scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
//   w = w * (1 - lr wd);  w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with the two bias-correction factors computed in double and rounded to
// float once, as the GPU launcher does; then bf16(w), round to nearest even.
// nvcc contracts multiply-adds into FMAs by default and this code does not,
// so CPU and GPU agree to about one fp32 ulp, not bit for bit (the test pins
// the CPU to a scalar restatement of the formula exactly).
//
// Vectorised by the compiler (a branch-free loop over restrict pointers,
// built with -fno-math-errno) and multi-threaded: the n elements are split
// into `threads` contiguous chunks of whole cache lines, one std::thread each
// (the calling thread takes the first). Results do not depend on `threads`.
//
// Thread-safety: the arrays must not overlap and must not be touched by
// others during a call; distinct calls on distinct arrays are independent.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace p3d {

struct CpuAdamWHyper {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
  int64_t step = 1;  // t, 1-based
};

// Round to the nearest bf16, ties to even (NaN -> 0x7fc0), as __float2bfloat16_rn.
inline uint16_t Bf16BitsRne(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// sum(grads[i]^2), accumulated in double per thread (deterministic for a
// given `threads`). For the global-norm clip: scale = min(1, max_norm / (sqrt(total) + 1e-6)).
double CpuSquaredSum(const float* grads, int64_t n, int threads);

// Updates master, m, v in place and writes bf16 bits of master to weights.
// Errors: n < 0, step < 1, threads < 1, or a null array with n > 0.
Status CpuAdamWUpdate(const float* grads, float grad_scale, float* master, float* m, float* v,
                      uint16_t* weights, int64_t n, const CpuAdamWHyper& h, int threads);

}  // namespace p3d
