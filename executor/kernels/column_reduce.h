// Deterministic column reductions over a [rows, n] matrix, used for bias and
// norm-weight gradients: rows are cut into kColumnSlabs slabs; one kernel writes a
// partial sum per (slab, column) into fp32 scratch, and a second adds the slabs,
// in slab order, into the fp32 gradient. No atomics, so results are bit-identical
// from run to run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

inline constexpr int64_t kColumnSlabs = 128;
// Rows per slab for a matrix of `rows` rows (the last slab may be shorter or empty).
constexpr int64_t RowsPerSlab(int64_t rows) { return (rows + kColumnSlabs - 1) / kColumnSlabs; }
// fp32 scratch elements one column reduction of width n needs.
constexpr int64_t ColumnPartialsFloats(int64_t n) { return kColumnSlabs * n; }

// grad[j] += sum_r dy[r, j]  (bias gradient). n even. partials: ColumnPartialsFloats(n).
Status BiasGradAccumulate(const bf16* dy, int64_t rows, int64_t n, float* partials, float* grad,
                          cudaStream_t stream);

// grad[j] += sum_s partials[s * n + j], s = 0 .. slabs-1 in order (slabs = 1:
// adds one fp32 vector, e.g. a bias gradient a GEMM epilogue wrote).
Status AccumulateColumnPartials(const float* partials, int64_t n, float* grad, cudaStream_t stream,
                                int64_t slabs = kColumnSlabs);

}  // namespace p3d
