#include "executor/check.h"
#include "executor/kernels/column_reduce.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/launch.h"

namespace p3d {
namespace {

// Thread = two adjacent columns, blockIdx.y = slab.
__global__ void ColumnSumPartialsKernel(const bf16* dy, int64_t rows, int64_t n,
                                        int64_t rows_per_slab, float* partials) {
  const int64_t j = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * 2;
  if (j >= n) return;
  const int64_t begin = blockIdx.y * rows_per_slab;
  const int64_t end = min(rows, begin + rows_per_slab);
  float s0 = 0.0f, s1 = 0.0f;
  for (int64_t r = begin; r < end; ++r) {
    __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(dy + r * n + j);
    s0 += __low2float(v);
    s1 += __high2float(v);
  }
  partials[blockIdx.y * n + j] = s0;
  partials[blockIdx.y * n + j + 1] = s1;
}

__global__ void AccumulatePartialsKernel(const float* partials, int64_t n, int64_t slabs,
                                         float* grad) {
  for (int64_t j : kernels::GridStride(n)) {
    float s = 0.0f;
    for (int64_t k = 0; k < slabs; ++k) s += partials[k * n + j];
    grad[j] += s;
  }
}

}  // namespace

Status AccumulateColumnPartials(const float* partials, int64_t n, float* grad, cudaStream_t stream,
                                int64_t slabs) {
  P3D_RETURN_IF_ERROR(RequirePositive("AccumulateColumnPartials", "n", n));
  P3D_RETURN_IF_ERROR(RequirePositive("AccumulateColumnPartials", "slabs", slabs));
  AccumulatePartialsKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(partials, n, slabs,
                                                                          grad);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status BiasGradAccumulate(const bf16* dy, int64_t rows, int64_t n, float* partials, float* grad,
                          cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("BiasGradAccumulate", "n", n, 2));
  P3D_RETURN_IF_ERROR(RequirePositive("BiasGradAccumulate", "rows", rows));
  dim3 grid(static_cast<unsigned>((n / 2 + 127) / 128), static_cast<unsigned>(kColumnSlabs));
  ColumnSumPartialsKernel<<<grid, 128, 0, stream>>>(dy, rows, n, RowsPerSlab(rows), partials);
  CUDA_CHECK_LAUNCH();
  return AccumulateColumnPartials(partials, n, grad, stream);
}

}  // namespace p3d
