#include "executor/check.h"
#include "executor/kernels/activation.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"

namespace p3d {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoef = 0.044715f;

__device__ inline float Gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kGeluCoef * x * x * x)));
}

__device__ inline float GeluGrad(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCoef * x * x * x);
  const float t = tanhf(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoef * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

__device__ inline float Sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void GeluForwardKernel(const bf16* x, bf16* y, int64_t packs) {
  for (int64_t i : kernels::GridStride(packs)) {
    kernels::Pack8 p = kernels::LoadPack(x + i * 8);
#pragma unroll
    for (int k = 0; k < 8; ++k) p.v[k] = __float2bfloat16(Gelu(__bfloat162float(p.v[k])));
    kernels::StorePack(y + i * 8, p);
  }
}

__global__ void GeluBackwardKernel(const bf16* dy, const bf16* x, bf16* dx, int64_t packs) {
  for (int64_t i : kernels::GridStride(packs)) {
    kernels::Pack8 g = kernels::LoadPack(dy + i * 8), v = kernels::LoadPack(x + i * 8);
#pragma unroll
    for (int k = 0; k < 8; ++k)
      g.v[k] = __float2bfloat16(__bfloat162float(g.v[k]) * GeluGrad(__bfloat162float(v.v[k])));
    kernels::StorePack(dx + i * 8, g);
  }
}

__global__ void SwiGluForwardKernel(const bf16* gu, bf16* h, int64_t packs, int64_t ffn) {
  const int64_t packs_per_row = ffn / 8;
  for (int64_t i : kernels::GridStride(packs)) {
    const int64_t r = i / packs_per_row, c = (i % packs_per_row) * 8;
    kernels::Pack8 g = kernels::LoadPack(gu + r * 2 * ffn + c);
    kernels::Pack8 u = kernels::LoadPack(gu + r * 2 * ffn + ffn + c);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float gv = __bfloat162float(g.v[k]);
      g.v[k] = __float2bfloat16(gv * Sigmoid(gv) * __bfloat162float(u.v[k]));
    }
    kernels::StorePack(h + r * ffn + c, g);
  }
}

__global__ void SwiGluBackwardKernel(const bf16* dh, const bf16* gu, bf16* dgu, int64_t packs,
                                     int64_t ffn) {
  const int64_t packs_per_row = ffn / 8;
  for (int64_t i : kernels::GridStride(packs)) {
    const int64_t r = i / packs_per_row, c = (i % packs_per_row) * 8;
    kernels::Pack8 d = kernels::LoadPack(dh + r * ffn + c);
    kernels::Pack8 g = kernels::LoadPack(gu + r * 2 * ffn + c);
    kernels::Pack8 u = kernels::LoadPack(gu + r * 2 * ffn + ffn + c);
    kernels::Pack8 dg, du;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float gv = __bfloat162float(g.v[k]), uv = __bfloat162float(u.v[k]);
      const float dv = __bfloat162float(d.v[k]);
      const float s = Sigmoid(gv);
      dg.v[k] = __float2bfloat16(dv * uv * s * (1.0f + gv * (1.0f - s)));
      du.v[k] = __float2bfloat16(dv * gv * s);
    }
    kernels::StorePack(dgu + r * 2 * ffn + c, dg);
    kernels::StorePack(dgu + r * 2 * ffn + ffn + c, du);
  }
}

}  // namespace

Status GeluForward(const bf16* x, bf16* y, int64_t n, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("GeluForward", "n", n, 8));
  GeluForwardKernel<<<kernels::GridFor(n / 8, 256), 256, 0, stream>>>(x, y, n / 8);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status GeluBackward(const bf16* dy, const bf16* x, bf16* dx, int64_t n, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("GeluBackward", "n", n, 8));
  GeluBackwardKernel<<<kernels::GridFor(n / 8, 256), 256, 0, stream>>>(dy, x, dx, n / 8);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status SwiGluForward(const bf16* gu, bf16* h, int64_t rows, int64_t ffn, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("SwiGluForward", "ffn", ffn, 8));
  P3D_RETURN_IF_ERROR(RequirePositive("SwiGluForward", "rows", rows));
  const int64_t packs = rows * ffn / 8;
  SwiGluForwardKernel<<<kernels::GridFor(packs, 256), 256, 0, stream>>>(gu, h, packs, ffn);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status SwiGluBackward(const bf16* dh, const bf16* gu, bf16* dgu, int64_t rows, int64_t ffn,
                      cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("SwiGluBackward", "ffn", ffn, 8));
  P3D_RETURN_IF_ERROR(RequirePositive("SwiGluBackward", "rows", rows));
  const int64_t packs = rows * ffn / 8;
  SwiGluBackwardKernel<<<kernels::GridFor(packs, 256), 256, 0, stream>>>(dh, gu, dgu, packs, ffn);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
