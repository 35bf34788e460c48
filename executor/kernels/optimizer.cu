#include <cmath>

#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"
#include "executor/kernels/optimizer.h"

namespace p3d {
namespace {

constexpr int kThreads = 256;

__global__ void SquaredSumPartialsKernel(const float* g, int64_t n, double* partials) {
  float s = 0.0f;
  for (int64_t i : kernels::GridStride(n)) s += g[i] * g[i];
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

__global__ void ClipScaleKernel(const double* partials, float max_norm, float* norm_out,
                                float* scale_out) {
  __shared__ double sh[kGradNormBlocks];
  for (int i = threadIdx.x; i < kGradNormBlocks; i += blockDim.x) sh[i] = partials[i];
  __syncthreads();
  for (int w = kGradNormBlocks / 2; w > 0; w /= 2) {
    for (int i = threadIdx.x; i < w; i += blockDim.x) sh[i] += sh[i + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double norm = sqrt(sh[0]);
    *norm_out = static_cast<float>(norm);
    *scale_out = static_cast<float>(fmin(1.0, max_norm / (norm + 1e-6)));
  }
}

__global__ void AddKernel(const float* src, float* dst, int64_t n) {
  for (int64_t i : kernels::GridStride(n)) dst[i] += src[i];
}

struct AdamWDevice {
  float lr, beta1, beta2, eps, decay_factor, step_size, inv_sqrt_bc2;
};

__global__ void AdamWKernel(const float* grads, const float* grad_scale, float* master, float* m,
                            float* v, bf16* weights, int64_t n, AdamWDevice h) {
  const float scale = *grad_scale;
  for (int64_t i : kernels::GridStride(n)) {
    const float g = grads[i] * scale;
    const float mi = h.beta1 * m[i] + (1.0f - h.beta1) * g;
    const float vi = h.beta2 * v[i] + (1.0f - h.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float w = master[i] * h.decay_factor;
    w -= h.step_size * mi / (sqrtf(vi) * h.inv_sqrt_bc2 + h.eps);
    master[i] = w;
    weights[i] = __float2bfloat16_rn(w);
  }
}

}  // namespace

Status GradSquaredSumPartials(const float* grads, int64_t n, double* partials,
                              cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("GradSquaredSumPartials", "n", n));
  SquaredSumPartialsKernel<<<kGradNormBlocks, kThreads, 0, stream>>>(grads, n, partials);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status ClipScaleFromPartials(const double* partials, float max_norm, float* norm_out,
                             float* scale_out, cudaStream_t stream) {
  if (!(max_norm > 0.0f)) return Status::InvalidArgument("GradNormClip: max_norm must be > 0");
  ClipScaleKernel<<<1, 1024, 0, stream>>>(partials, max_norm, norm_out, scale_out);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status GradNormClip(const float* grads, int64_t n, float max_norm, double* partials,
                    float* norm_out, float* scale_out, cudaStream_t stream) {
  if (!(max_norm > 0.0f)) return Status::InvalidArgument("GradNormClip: max_norm must be > 0");
  P3D_RETURN_IF_ERROR(GradSquaredSumPartials(grads, n, partials, stream));
  return ClipScaleFromPartials(partials, max_norm, norm_out, scale_out, stream);
}

Status AddF32(const float* src, float* dst, int64_t n, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("AddF32", "n", n));
  AddKernel<<<kernels::GridFor(n, kThreads, 8192), kThreads, 0, stream>>>(src, dst, n);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status AdamWUpdate(const float* grads, const float* grad_scale, float* master, float* m, float* v,
                   bf16* weights, int64_t n, const AdamWHyper& h, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequirePositive("AdamWUpdate", "n", n));
  P3D_RETURN_IF_ERROR(RequirePositive("AdamWUpdate", "step", h.step));
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  AdamWDevice d{h.lr,
                h.beta1,
                h.beta2,
                h.eps,
                static_cast<float>(1.0 - static_cast<double>(h.lr) * h.weight_decay),
                static_cast<float>(h.lr / bc1),
                static_cast<float>(1.0 / std::sqrt(bc2))};
  AdamWKernel<<<kernels::GridFor(n, kThreads, 8192), kThreads, 0, stream>>>(
      grads, grad_scale, master, m, v, weights, n, d);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
