// Device helpers shared by the kernel files: warp/block reductions and 16-byte
// packs of 8 bf16 values. Only included by .cu files.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "executor/dtype.h"

namespace p3d {
namespace kernels {

constexpr float kNegLarge = -1e30f;  // finite "minus infinity": exp(kNegLarge - x) == 0

__device__ inline float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
// the result. Contains __syncthreads(): call from all threads.
__device__ inline float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // protect `partial` from a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float t = lane < warps ? partial[lane] : 0.0f;
  return WarpSum(t);
}

// Online-softmax pair (running max m, sum l of exp(x - m)) merge.
__device__ inline void MergeMaxSum(float& m, float& l, float m2, float l2) {
  float mx = fmaxf(m, m2);
  l = l * __expf(m - mx) + l2 * __expf(m2 - mx);
  m = mx;
}

__device__ inline void WarpMergeMaxSum(float& m, float& l) {
  for (int o = 16; o > 0; o >>= 1) {
    float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    float l2 = __shfl_xor_sync(0xffffffffu, l, o);
    MergeMaxSum(m, l, m2, l2);
  }
}

struct alignas(16) Pack8 {
  __nv_bfloat16 v[8];
};

__device__ inline Pack8 LoadPack(const __nv_bfloat16* p) {
  Pack8 r;
  *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
  return r;
}

__device__ inline void StorePack(__nv_bfloat16* p, const Pack8& r) {
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&r);
}

// Blocks for a grid-stride loop over n items with `threads` per block.
inline unsigned GridFor(int64_t n, int threads, int64_t max_blocks = 65536) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks);
}

}  // namespace kernels
}  // namespace p3d
