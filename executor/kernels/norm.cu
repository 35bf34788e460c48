#include <type_traits>

#include "executor/check.h"
#include "executor/kernels/column_reduce.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"
#include "executor/kernels/norm.h"

namespace p3d {
namespace {

constexpr int kWarpsPerBlock = 8;

// One warp per row: this thread's warp's row, its lane, and that row of a.x
// (null past the last row, where the warp has nothing to do).
struct NormRow {
  int64_t row;
  int lane;
  const bf16* x;
};
template <typename Args>
__device__ inline NormRow NormRowOf(const Args& a) {
  const auto [row, lane] = kernels::WarpRowOf(kWarpsPerBlock);
  return {row, lane, row < a.rows ? a.x + row * a.hidden : nullptr};
}

// One warp per row; each lane handles packs of 8 at columns lane*8 + 256*i.
template <bool kRms>
__global__ void NormForwardKernel(NormForwardArgs a) {
  const auto [row, lane, xr] = NormRowOf(a);
  if (xr == nullptr) return;
  const int64_t H = a.hidden;
  float mu = 0.0f;
  if (!kRms) {
    float s = 0.0f;
    for (int64_t c = lane * 8; c < H; c += 256) {
      kernels::Pack8 p = kernels::LoadPack(xr + c);
#pragma unroll
      for (int k = 0; k < 8; ++k) s += __bfloat162float(p.v[k]);
    }
    mu = kernels::WarpSum(s) / static_cast<float>(H);
  }
  float q = 0.0f;
  for (int64_t c = lane * 8; c < H; c += 256) {
    kernels::Pack8 p = kernels::LoadPack(xr + c);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float d = __bfloat162float(p.v[k]) - mu;
      q += d * d;
    }
  }
  const float rs = rsqrtf(kernels::WarpSum(q) / static_cast<float>(H) + a.eps);
  bf16* yr = a.y + row * H;
  for (int64_t c = lane * 8; c < H; c += 256) {
    kernels::Pack8 p = kernels::LoadPack(xr + c), w = kernels::LoadPack(a.weight + c), b;
    if (!kRms) b = kernels::LoadPack(a.bias + c);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float v = (__bfloat162float(p.v[k]) - mu) * rs * __bfloat162float(w.v[k]);
      if (!kRms) v += __bfloat162float(b.v[k]);
      p.v[k] = __float2bfloat16(v);
    }
    kernels::StorePack(yr + c, p);
  }
  if (lane == 0) {
    if (!kRms) a.mean[row] = mu;
    a.rstd[row] = rs;
  }
}

// dx = dres + rstd * (g - [mean(g)] - xhat * mean(g * xhat)),  g = dy * w.
template <bool kRms>
__global__ void NormBackwardDxKernel(NormBackwardArgs a) {
  const auto [row, lane, xr] = NormRowOf(a);
  if (xr == nullptr) return;
  const int64_t H = a.hidden;
  const bf16* dyr = a.dy + row * H;
  const float mu = kRms ? 0.0f : a.mean[row];
  const float rs = a.rstd[row];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (int64_t c = lane * 8; c < H; c += 256) {
    kernels::Pack8 x = kernels::LoadPack(xr + c), dy = kernels::LoadPack(dyr + c),
                   w = kernels::LoadPack(a.weight + c);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float g = __bfloat162float(dy.v[k]) * __bfloat162float(w.v[k]);
      sum_g += g;
      sum_gx += g * (__bfloat162float(x.v[k]) - mu) * rs;
    }
  }
  const float mean_g = kRms ? 0.0f : kernels::WarpSum(sum_g) / static_cast<float>(H);
  const float mean_gx = kernels::WarpSum(sum_gx) / static_cast<float>(H);
  bf16* dxr = a.dx + row * H;
  const bf16* drr = a.dresidual ? a.dresidual + row * H : nullptr;
  for (int64_t c = lane * 8; c < H; c += 256) {
    kernels::Pack8 x = kernels::LoadPack(xr + c), dy = kernels::LoadPack(dyr + c),
                   w = kernels::LoadPack(a.weight + c), out;
    kernels::Pack8 dr;
    if (drr) dr = kernels::LoadPack(drr + c);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float g = __bfloat162float(dy.v[k]) * __bfloat162float(w.v[k]);
      float xhat = (__bfloat162float(x.v[k]) - mu) * rs;
      float v = rs * (g - mean_g - xhat * mean_gx);
      if (drr) v += __bfloat162float(dr.v[k]);
      out.v[k] = __float2bfloat16(v);
    }
    kernels::StorePack(dxr + c, out);
  }
}

// Per (slab, column) partial sums of dy * xhat (weight) and dy (bias).
template <bool kRms>
__global__ void NormWeightPartialsKernel(NormBackwardArgs a, int64_t rows_per_slab) {
  const int64_t H = a.hidden;
  const int64_t j = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * 2;
  if (j >= H) return;
  const int64_t begin = blockIdx.y * rows_per_slab;
  const int64_t end = min(a.rows, begin + rows_per_slab);
  float w0 = 0.0f, w1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
  for (int64_t r = begin; r < end; ++r) {
    const float mu = kRms ? 0.0f : a.mean[r];
    const float rs = a.rstd[r];
    __nv_bfloat162 x = *reinterpret_cast<const __nv_bfloat162*>(a.x + r * H + j);
    __nv_bfloat162 dy = *reinterpret_cast<const __nv_bfloat162*>(a.dy + r * H + j);
    w0 += __low2float(dy) * (__low2float(x) - mu) * rs;
    w1 += __high2float(dy) * (__high2float(x) - mu) * rs;
    b0 += __low2float(dy);
    b1 += __high2float(dy);
  }
  float* pw = a.partials + blockIdx.y * H;
  pw[j] = w0;
  pw[j + 1] = w1;
  if (!kRms) {
    float* pb = a.partials + ColumnPartialsFloats(H) + blockIdx.y * H;
    pb[j] = b0;
    pb[j + 1] = b1;
  }
}

// The checks of both directions (errors name `kernel`); `bias` is LayerNorm's
// bias or its gradient, named `bias_name`.
template <typename Args>
Status CheckArgs(const char* kernel, const Args& a, const void* bias, const char* bias_name) {
  P3D_RETURN_IF_ERROR(RequireMultiple(kernel, "hidden", a.hidden, 8));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "rows", a.rows));
  if (a.kind != NormKind::kRmsNorm && (!bias || !a.mean))
    return Status::InvalidArgument(StrCat(kernel, ": LayerNorm needs ", bias_name, " and mean"));
  return Status::Ok();
}

// Calls launch(std::bool_constant<kRms>{}) for the norm `kind` (kRms: RMSNorm),
// so that each kernel is launched as the instantiation of its kind.
template <typename Launch>
void ForKind(NormKind kind, Launch&& launch) {
  if (kind == NormKind::kRmsNorm)
    launch(std::true_type{});
  else
    launch(std::false_type{});
}

}  // namespace

Status NormForward(const NormForwardArgs& a, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckArgs("NormForward", a, a.bias, "bias"));
  const unsigned blocks = kernels::WarpRowBlocks(a.rows, kWarpsPerBlock);
  ForKind(a.kind, [&](auto rms_tag) {
    NormForwardKernel<decltype(rms_tag)::value><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(a);
  });
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status NormBackward(const NormBackwardArgs& a, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckArgs("NormBackward", a, a.dbias, "dbias"));
  const bool rms = a.kind == NormKind::kRmsNorm;
  // Weight partials read dy and x before dx (which may alias nothing they read) is written.
  dim3 grid(static_cast<unsigned>((a.hidden / 2 + 127) / 128), static_cast<unsigned>(kColumnSlabs));
  ForKind(a.kind, [&](auto rms_tag) {
    NormWeightPartialsKernel<decltype(rms_tag)::value>
        <<<grid, 128, 0, stream>>>(a, RowsPerSlab(a.rows));
  });
  CUDA_CHECK_LAUNCH();
  P3D_RETURN_IF_ERROR(AccumulateColumnPartials(a.partials, a.hidden, a.dweight, stream));
  if (!rms) {
    P3D_RETURN_IF_ERROR(AccumulateColumnPartials(a.partials + ColumnPartialsFloats(a.hidden),
                                                 a.hidden, a.dbias, stream));
  }
  const unsigned blocks = kernels::WarpRowBlocks(a.rows, kWarpsPerBlock);
  ForKind(a.kind, [&](auto rms_tag) {
    NormBackwardDxKernel<decltype(rms_tag)::value><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(a);
  });
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
