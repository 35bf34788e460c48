#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/cross_entropy.h"
#include "executor/kernels/launch.h"

namespace p3d {
namespace {

constexpr int kThreads = 512;

// One block per row: online max/sum over the row, block merge, then a second
// pass writes the gradient.
__global__ void CrossEntropyKernel(CrossEntropyArgs a) {
  __shared__ float sm[32], sl[32];
  const int64_t row = blockIdx.x;
  const float* x = a.logits + row * a.ld;
  float m = kernels::kNegLarge, l = 0.0f;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) kernels::OnlineMaxSumAdd(m, l, x[j]);
  kernels::WarpMergeMaxSum(m, l);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
  __syncthreads();
  m = lane < warps ? sm[lane] : kernels::kNegLarge;
  l = lane < warps ? sl[lane] : 0.0f;
  kernels::WarpMergeMaxSum(m, l);
  const int32_t target = a.targets[row];
  const float inv = 1.0f / l;
  if (threadIdx.x == 0) a.losses[row] = logf(l) + m - x[target];
  bf16* d = a.dlogits + row * a.ld;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) {
    float p = __expf(x[j] - m) * inv;
    if (j == target) p -= 1.0f;
    d[j] = __float2bfloat16(p * a.grad_scale);
  }
}

__global__ void LossSumKernel(const float* losses, int64_t n, float* total) {
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += losses[i];
  s = kernels::BlockSum(s);
  if (threadIdx.x == 0) *total += s;
}

}  // namespace

Status CrossEntropyForwardBackward(const CrossEntropyArgs& a, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("CrossEntropyForwardBackward", "rows", a.rows));
  P3D_RETURN_IF_ERROR(RequirePositive("CrossEntropyForwardBackward", "vocab", a.vocab));
  if (a.ld < a.vocab)
    return Status::InvalidArgument("CrossEntropyForwardBackward: ld must be >= vocab");
  CrossEntropyKernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status AccumulateLossSum(const float* losses, int64_t n, float* total, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("AccumulateLossSum", "n", n));
  LossSumKernel<<<1, 1024, 0, stream>>>(losses, n, total);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
