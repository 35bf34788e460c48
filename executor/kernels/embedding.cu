#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/embedding.h"
#include "executor/kernels/launch.h"

namespace p3d {
namespace {

__global__ void EmbeddingForwardKernel(const int32_t* tokens, const bf16* wte, const bf16* wpe,
                                       bf16* x, int64_t packs, int64_t seq, int64_t hidden) {
  const int64_t packs_per_row = hidden / 8;
  for (int64_t i : kernels::GridStride(packs)) {
    const int64_t t = i / packs_per_row, c = (i % packs_per_row) * 8;
    kernels::Pack8 w = kernels::LoadPack(wte + int64_t{tokens[t]} * hidden + c);
    if (wpe) w = kernels::AddPacks(w, kernels::LoadPack(wpe + (t % seq) * hidden + c));
    kernels::StorePack(x + t * hidden + c, w);
  }
}

__global__ void EmbeddingBackwardKernel(const bf16* dx, const int32_t* bucket_token,
                                        const int32_t* bucket_offset, const int32_t* positions,
                                        int64_t hidden, float* dwte) {
  const int64_t u = blockIdx.x;
  const int32_t begin = bucket_offset[u], end = bucket_offset[u + 1];
  float* row = dwte + int64_t{bucket_token[u]} * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    float acc = 0.0f;
    for (int32_t p = begin; p < end; ++p)
      acc += __bfloat162float(dx[int64_t{positions[p]} * hidden + j]);
    row[j] += acc;
  }
}

__global__ void PositionEmbeddingBackwardKernel(const bf16* dx, int64_t batch, int64_t seq,
                                                int64_t hidden, float* dwpe) {
  const int64_t n = seq * hidden;
  for (int64_t i : kernels::GridStride(n)) {
    float acc = 0.0f;
    for (int64_t b = 0; b < batch; ++b) acc += __bfloat162float(dx[b * n + i]);
    dwpe[i] += acc;
  }
}

}  // namespace

Status EmbeddingForward(const int32_t* tokens, const bf16* wte, const bf16* wpe, bf16* x,
                        int64_t tokens_count, int64_t seq, int64_t hidden, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("EmbeddingForward", "hidden", hidden, 8));
  P3D_RETURN_IF_ERROR(RequirePositive("EmbeddingForward", "tokens", tokens_count));
  P3D_RETURN_IF_ERROR(RequirePositive("EmbeddingForward", "seq", seq));
  const int64_t packs = tokens_count * hidden / 8;
  EmbeddingForwardKernel<<<kernels::GridFor(packs, 256), 256, 0, stream>>>(tokens, wte, wpe, x,
                                                                           packs, seq, hidden);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status EmbeddingBackward(const bf16* dx, const int32_t* bucket_token, const int32_t* bucket_offset,
                         const int32_t* positions, int64_t buckets, int64_t hidden, float* dwte,
                         cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("EmbeddingBackward", "buckets", buckets));
  P3D_RETURN_IF_ERROR(RequirePositive("EmbeddingBackward", "hidden", hidden));
  EmbeddingBackwardKernel<<<static_cast<unsigned>(buckets), 256, 0, stream>>>(
      dx, bucket_token, bucket_offset, positions, hidden, dwte);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status PositionEmbeddingBackward(const bf16* dx, int64_t batch, int64_t seq, int64_t hidden,
                                 float* dwpe, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("PositionEmbeddingBackward", "batch", batch));
  const int64_t n = seq * hidden;
  P3D_RETURN_IF_ERROR(RequirePositive("PositionEmbeddingBackward", "seq*hidden", n));
  PositionEmbeddingBackwardKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(dx, batch, seq,
                                                                                hidden, dwpe);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
