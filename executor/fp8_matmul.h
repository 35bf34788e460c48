// Fp8Matmul: FP8 GEMMs through cuBLASLt, as Transformer Engine runs a linear
// layer's GEMMs under an FP8 recipe (common/fp8.h): E4M3 x E4M3 inputs with
// one fp32 dequantization scale each (per-tensor scaling), fp32 accumulation,
// bf16 output. p3d-calibrate's fp8 probe times it; p3d-run does not train in
// FP8 yet.
//
// Layout: FP8 tensor cores on Hopper and Ada take only "TN" GEMMs, both
// operands K-major (cuBLASLt's FP8 requirements), which in p3d's row-major
// vocabulary (executor/matmul.h) is
//   D[m,n] = a_scale * b_scale * A[m,k] @ B[n,k]^T
// with A and B row-major (a linear layer's forward y = x @ W^T as it is; its
// input gradient and weight gradient need the transposed copies TE keeps:
// dX[T,K] = dY[T,N] @ (W^T)[K,N]^T, dW[N,K] = (dY^T)[N,T] @ (X^T)[K,T]^T).
// Requirements (cuBLASLt): k a multiple of 16, 16-byte aligned operands,
// compute capability >= 8.9. The scale pointers too must be 16-byte aligned:
// with two scales 4 bytes apart in one array cuBLASLt 13.0 answered
// CUBLAS_STATUS_NOT_SUPPORTED on an H100 (gpu_check fp8_gemm, 2026-12-07).
//
// Thread-safety: one Fp8Matmul per stream/thread; not thread-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

using fp8e4m3 = __nv_fp8_e4m3;

struct Fp8MatmulParams {
  int64_t m = 0, n = 0, k = 0;
  const fp8e4m3* a = nullptr;     // [m,k] row-major
  const fp8e4m3* b = nullptr;     // [n,k] row-major
  const float* a_scale = nullptr;  // device scalar: A's dequantization scale (1/quantization scale)
  const float* b_scale = nullptr;  // device scalar: B's
  bf16* d = nullptr;               // [m,n] row-major
  // CUBLASLT_MATMUL_DESC_FAST_ACCUM: no periodic promotion of the tensor
  // cores' partial sums to fp32 (TE's fprop under current scaling; its dgrad
  // and wgrad promote: use_split_accumulator).
  bool fast_accum = false;
};

class Fp8Matmul {
 public:
  // `workspace` (device, >= workspace_bytes, 256-byte aligned) is owned by the caller.
  static StatusOr<std::unique_ptr<Fp8Matmul>> Create(void* workspace, size_t workspace_bytes);
  ~Fp8Matmul();
  Fp8Matmul(const Fp8Matmul&) = delete;
  Fp8Matmul& operator=(const Fp8Matmul&) = delete;

  // Checks the arguments (positive shapes, k % 16, operands present and
  // aligned) and
  // enqueues the product on `stream`.
  Status Run(const Fp8MatmulParams& p, cudaStream_t stream);

 private:
  struct Plan;  // descriptor, layouts and algorithm per (m, n, k, fast_accum)
  using Key = std::array<int64_t, 4>;
  Fp8Matmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes);
  StatusOr<Plan*> GetPlan(const Fp8MatmulParams& p);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, std::unique_ptr<Plan>> cache_;
};

// y[i] = fp8(x[i] * scale) (E4M3, saturating at +-448) for i < n: what a
// cast kernel writes with quantization scale `scale`; the GEMM then takes
// 1/scale as the operand's dequantization scale.
Status QuantizeE4m3(const float* x, fp8e4m3* y, int64_t n, float scale, cudaStream_t stream);

}  // namespace p3d
