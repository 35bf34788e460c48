#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"
#include "executor/kernels/softmax.h"

namespace p3d {
namespace {

constexpr int kWarpsPerBlock = 8;

// The row of this thread's warp (one warp per row), its lane, the row's query
// position (columns <= pos are kept) and the end of its last causal block
// (columns in (pos, end) are written as zeros).
struct CausalRow {
  int64_t row;
  int lane;
  int64_t pos, end;
};
__device__ inline CausalRow CausalRowOf(const SoftmaxShape& sh) {
  const auto [row, lane] = kernels::WarpRowOf(kWarpsPerBlock);
  const int64_t pos = (row / sh.group) % sh.seq;
  return {row, lane, pos, (pos / sh.block + 1) * sh.block};
}

// One warp per row; lane handles packs of 8 at columns lane*8 + 256*i.
__global__ void CausalSoftmaxForwardKernel(const bf16* x, bf16* p, SoftmaxShape sh) {
  const auto [row, lane, pos, end] = CausalRowOf(sh);
  if (row >= sh.rows) return;
  const int64_t seq = sh.seq;
  const bf16* xr = x + row * seq;
  bf16* pr = p + row * seq;
  float m = kernels::kNegLarge, l = 0.0f;
  for (int64_t c = lane * 8; c <= pos; c += 256) {
    kernels::Pack8 v = kernels::LoadPack(xr + c);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (c + k <= pos) kernels::OnlineMaxSumAdd(m, l, __bfloat162float(v.v[k]));
  }
  kernels::WarpMergeMaxSum(m, l);
  const float inv = 1.0f / l;
  for (int64_t c = lane * 8; c < end; c += 256) {
    kernels::Pack8 out;
    if (c <= pos) {
      kernels::Pack8 v = kernels::LoadPack(xr + c);
#pragma unroll
      for (int k = 0; k < 8; ++k)
        out.v[k] =
            __float2bfloat16(c + k <= pos ? __expf(__bfloat162float(v.v[k]) - m) * inv : 0.0f);
    } else {
      out = kernels::ZeroPack();
    }
    kernels::StorePack(pr + c, out);
  }
}

__global__ void CausalSoftmaxBackwardKernel(const bf16* p, const bf16* dp, bf16* ds,
                                            SoftmaxShape sh) {
  const auto [row, lane, pos, end] = CausalRowOf(sh);
  if (row >= sh.rows) return;
  const int64_t seq = sh.seq;
  const bf16* pr = p + row * seq;
  const bf16* dpr = dp + row * seq;
  float dot = 0.0f;
  for (int64_t c = lane * 8; c <= pos; c += 256) {
    kernels::Pack8 a = kernels::LoadPack(pr + c), g = kernels::LoadPack(dpr + c);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      if (c + k <= pos) dot += __bfloat162float(a.v[k]) * __bfloat162float(g.v[k]);
  }
  dot = kernels::WarpSum(dot);
  bf16* dsr = ds + row * seq;
  for (int64_t c = lane * 8; c < end; c += 256) {
    kernels::Pack8 out;
    if (c <= pos) {
      kernels::Pack8 a = kernels::LoadPack(pr + c), g = kernels::LoadPack(dpr + c);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float v = __bfloat162float(a.v[k]) * (__bfloat162float(g.v[k]) - dot);
        out.v[k] = __float2bfloat16(c + k <= pos ? v : 0.0f);
      }
    } else {
      out = kernels::ZeroPack();
    }
    kernels::StorePack(dsr + c, out);
  }
}

Status CheckShape(const char* kernel, const SoftmaxShape& sh) {
  P3D_RETURN_IF_ERROR(RequireMultiple(kernel, "seq", sh.seq, 8));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "rows", sh.rows));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "group", sh.group));
  P3D_RETURN_IF_ERROR(RequireMultiple(kernel, "block", sh.block, 8));
  return RequireMultiple(kernel, "seq (by block)", sh.seq, sh.block);
}

}  // namespace

Status CausalSoftmaxForward(const bf16* x, bf16* p, const SoftmaxShape& sh, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckShape("CausalSoftmaxForward", sh));
  const unsigned blocks = kernels::WarpRowBlocks(sh.rows, kWarpsPerBlock);
  CausalSoftmaxForwardKernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(x, p, sh);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status CausalSoftmaxBackward(const bf16* p, const bf16* dp, bf16* ds, const SoftmaxShape& sh,
                             cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckShape("CausalSoftmaxBackward", sh));
  const unsigned blocks = kernels::WarpRowBlocks(sh.rows, kWarpsPerBlock);
  CausalSoftmaxBackwardKernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(p, dp, ds, sh);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
