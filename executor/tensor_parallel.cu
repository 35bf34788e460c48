#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"
#include "executor/kernels/optimizer.h"
#include "executor/tensor_parallel.h"

namespace p3d {
namespace {

constexpr int kThreads = 512;

__global__ void VocabEmbeddingKernel(const int32_t* tokens, const bf16* wte, const bf16* wpe,
                                     int64_t vocab_begin, int64_t rows, bf16* x, int64_t packs,
                                     int64_t seq, int64_t hidden) {
  const int64_t packs_per_row = hidden / 8;
  for (int64_t i : kernels::GridStride(packs)) {
    const int64_t t = i / packs_per_row, c = (i % packs_per_row) * 8;
    const int64_t local = int64_t{tokens[t]} - vocab_begin;
    kernels::Pack8 w = local >= 0 && local < rows ? kernels::LoadPack(wte + local * hidden + c)
                                                  : kernels::ZeroPack();
    if (wpe) w = kernels::AddPacks(w, kernels::LoadPack(wpe + (t % seq) * hidden + c));
    kernels::StorePack(x + t * hidden + c, w);
  }
}

// One block per row: the local maximum over the real columns.
__global__ void RowMaxKernel(VocabParallelLossArgs a) {
  const float* x = a.logits + blockIdx.x * a.ld;
  float m = kernels::kNegLarge;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) m = fmaxf(m, x[j]);
  m = kernels::WarpMax(m);
  __shared__ float sm[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (lane == 0) sm[warp] = m;
  __syncthreads();
  m = kernels::WarpMax(lane < warps ? sm[lane] : kernels::kNegLarge);
  if (threadIdx.x == 0) a.stats[blockIdx.x] = m;
}

// stats[rows + r] = sum_j exp(x - max); stats[2 rows + r] = target logit if mine, else 0.
__global__ void SumExpKernel(VocabParallelLossArgs a) {
  const int64_t row = blockIdx.x;
  const float* x = a.logits + row * a.ld;
  const float m = a.stats[row];
  float l = 0.0f;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) l += __expf(x[j] - m);
  l = kernels::BlockSum(l);
  if (threadIdx.x == 0) {
    const int64_t local = int64_t{a.targets[row]} - a.vocab_begin;
    a.stats[a.rows + row] = l;
    a.stats[2 * a.rows + row] = local >= 0 && local < a.vocab ? x[local] : 0.0f;
  }
}

__global__ void LossGradKernel(VocabParallelLossArgs a) {
  const int64_t row = blockIdx.x;
  const float* x = a.logits + row * a.ld;
  const float m = a.stats[row], l = a.stats[a.rows + row];
  const float inv = 1.0f / l;
  const int64_t target = int64_t{a.targets[row]} - a.vocab_begin;
  if (threadIdx.x == 0) a.losses[row] = logf(l) + m - a.stats[2 * a.rows + row];
  bf16* d = a.dlogits + row * a.ld;
  for (int64_t j = threadIdx.x; j < a.vocab; j += blockDim.x) {
    float p = __expf(x[j] - m) * inv;
    if (j == target) p -= 1.0f;
    d[j] = __float2bfloat16(p * a.grad_scale);
  }
}

__global__ void AdjustNormKernel(const float* g, const NormScale* ranges, int n, double* partials) {
  double acc = 0.0;
  for (int r = 0; r < n; ++r) {
    const double f = static_cast<double>(ranges[r].scale) - 1.0;
    for (int64_t i = ranges[r].begin + blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
         i < ranges[r].end; i += int64_t{gridDim.x} * blockDim.x) {
      const double v = g[i];
      acc += f * v * v;
    }
  }
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] += sh[0];
}

}  // namespace

Status VocabParallelEmbeddingForward(const int32_t* tokens, const bf16* wte, const bf16* wpe,
                                     int64_t vocab_begin, int64_t rows, bf16* x,
                                     int64_t tokens_count, int64_t seq, int64_t hidden,
                                     cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("VocabParallelEmbeddingForward", "hidden", hidden, 8));
  P3D_RETURN_IF_ERROR(RequirePositive("VocabParallelEmbeddingForward", "tokens", tokens_count));
  P3D_RETURN_IF_ERROR(RequirePositive("VocabParallelEmbeddingForward", "rows", rows));
  const int64_t packs = tokens_count * hidden / 8;
  VocabEmbeddingKernel<<<kernels::GridFor(packs, 256), 256, 0, stream>>>(
      tokens, wte, wpe, vocab_begin, rows, x, packs, seq, hidden);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status VocabParallelCrossEntropy(const VocabParallelLossArgs& a, TensorParallel& tp,
                                 cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("VocabParallelCrossEntropy", "rows", a.rows));
  P3D_RETURN_IF_ERROR(RequirePositive("VocabParallelCrossEntropy", "vocab", a.vocab));
  if (a.ld < a.vocab)
    return Status::InvalidArgument("VocabParallelCrossEntropy: ld must be >= vocab");
  const unsigned rows = static_cast<unsigned>(a.rows);
  RowMaxKernel<<<rows, kThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
  P3D_RETURN_IF_ERROR(tp.AllReduceMaxF32(a.stats, a.rows, stream));
  SumExpKernel<<<rows, kThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
  P3D_RETURN_IF_ERROR(tp.AllReduceSumF32(a.stats + a.rows, 2 * a.rows, stream));
  LossGradKernel<<<rows, kThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status AdjustNormPartials(const float* grads, const NormScale* ranges, int n, double* partials,
                          cudaStream_t stream) {
  if (n == 0) return Status::Ok();
  AdjustNormKernel<<<kGradNormBlocks, kThreads, 0, stream>>>(grads, ranges, n, partials);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
