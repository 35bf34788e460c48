// CublasLtPlan: one cached cuBLASLt matmul (its operation descriptor, the
// A, B and D layouts, and the algorithm the heuristic chose), destroyed with
// it. The GEMM wrappers (executor/matmul.h, executor/fp8_matmul.h) keep one
// per shape.
#pragma once

#include <cublasLt.h>

namespace p3d {

struct CublasLtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo;
  CublasLtPlan() = default;
  CublasLtPlan(const CublasLtPlan&) = delete;
  CublasLtPlan& operator=(const CublasLtPlan&) = delete;
  ~CublasLtPlan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};

}  // namespace p3d
