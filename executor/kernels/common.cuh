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

// Adds x to an online-softmax pair (running max m, sum l of exp(values - m)).
__device__ inline void OnlineMaxSumAdd(float& m, float& l, float x) {
  if (x > m) {
    l = l * __expf(m - x) + 1.0f;
    m = x;
  } else {
    l += __expf(x - m);
  }
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

__device__ inline Pack8 ZeroPack() {
  Pack8 r;
#pragma unroll
  for (int k = 0; k < 8; ++k) r.v[k] = __float2bfloat16(0.0f);
  return r;
}

// a + b per element, summed in fp32 and rounded once to bf16.
__device__ inline Pack8 AddPacks(const Pack8& a, const Pack8& b) {
  Pack8 r;
#pragma unroll
  for (int k = 0; k < 8; ++k)
    r.v[k] = __float2bfloat16(__bfloat162float(a.v[k]) + __bfloat162float(b.v[k]));
  return r;
}

// This thread's indices of a grid-stride loop over [0, n):
//   for (int64_t i : kernels::GridStride(n)) ...
// visits blockIdx.x * blockDim.x + threadIdx.x, then every gridDim.x *
// blockDim.x further, while below n.
class GridStride {
 public:
  struct Iterator {
    int64_t i, step;
    __device__ int64_t operator*() const { return i; }
    __device__ Iterator& operator++() {
      i += step;
      return *this;
    }
    __device__ bool operator!=(const Iterator& end) const { return i < end.i; }
  };
  __device__ explicit GridStride(int64_t n) : n_(n) {}
  __device__ Iterator begin() const {
    return {blockIdx.x * int64_t{blockDim.x} + threadIdx.x, int64_t{gridDim.x} * blockDim.x};
  }
  __device__ Iterator end() const { return {n_, 0}; }

 private:
  int64_t n_;
};

// One warp per row, `warps_per_block` warps per block: the row of this
// thread's warp and the thread's lane in it, and (host side) the blocks that
// cover `rows` rows.
struct WarpRowLane {
  int64_t row;
  int lane;
};
__device__ inline WarpRowLane WarpRowOf(int warps_per_block) {
  return {blockIdx.x * int64_t{warps_per_block} + threadIdx.x / 32,
          static_cast<int>(threadIdx.x % 32)};
}
inline unsigned WarpRowBlocks(int64_t rows, int warps_per_block) {
  return static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
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
