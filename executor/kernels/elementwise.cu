#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/elementwise.h"
#include "executor/kernels/launch.h"
#include "executor/rng.h"

namespace p3d {
namespace {

__global__ void ResidualAddKernel(const bf16* a, const bf16* b, bf16* out, int64_t packs) {
  for (int64_t i : kernels::GridStride(packs))
    kernels::StorePack(
        out + i * 8, kernels::AddPacks(kernels::LoadPack(a + i * 8), kernels::LoadPack(b + i * 8)));
}

__global__ void CastKernel(const float* in, bf16* out, int64_t n) {
  for (int64_t i : kernels::GridStride(n)) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void InitNormalKernel(float* out, int64_t n, float stddev, uint64_t seed,
                                 uint64_t stream_id) {
  for (int64_t i : kernels::GridStride(n)) {
    float u1, u2;
    TwoUniforms(RandomBits(seed, stream_id, static_cast<uint64_t>(i)), &u1, &u2);
    out[i] = stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
  }
}

__global__ void FillKernel(float* out, int64_t n, float value) {
  for (int64_t i : kernels::GridStride(n)) out[i] = value;
}

}  // namespace

Status ResidualAdd(const bf16* a, const bf16* b, bf16* out, int64_t n, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("ResidualAdd", "n", n, 8));
  ResidualAddKernel<<<kernels::GridFor(n / 8, 256), 256, 0, stream>>>(a, b, out, n / 8);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status CastToBf16(const float* in, bf16* out, int64_t n, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("CastToBf16", "n", n));
  CastKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(in, out, n);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status InitNormal(float* out, int64_t n, float stddev, uint64_t seed, uint64_t stream_id,
                  cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("InitNormal", "n", n));
  InitNormalKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(out, n, stddev, seed, stream_id);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status Fill(float* out, int64_t n, float value, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("Fill", "n", n));
  FillKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(out, n, value);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
