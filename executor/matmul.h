// Matmul: the one wrapper through which the executor runs every matrix multiply
// (cuBLASLt; bf16 inputs, fp32 accumulation).
//
// All matrices are ROW-MAJOR, as in PyTorch:
//   D[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * D[m,n]  (+ bias[n] per row)
// A is stored as [m,k] (trans_a = false) or [k,m] (trans_a = true), B as [k,n]
// or [n,k]; ld* are row strides in elements (0 = densely packed). A linear
// layer y = x @ W^T with W stored [out,in] is {m=T, n=out, k=in, trans_b=true}.
// beta = 1 accumulates into D (used for fp32 gradient accumulation across
// micro-batches). Strided-batched: `batch` independent products whose operands
// start stride_* elements apart (attention: one product per (b, kv-head)).
//
// Descriptors, layouts and the heuristic's algorithm choice are cached per
// shape (dims, transposes, leading dims, strides, output type, epilogue and
// operand alignment), so each distinct GEMM of a training step queries the
// heuristic once. The same shape therefore always runs the same algorithm,
// which keeps repeated runs bit-identical.
//
// Thread-safety: one Matmul per stream/thread; not thread-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

struct MatmulParams {
  int64_t m = 0, n = 0, k = 0;
  const bf16* a = nullptr;
  bool trans_a = false;
  int64_t lda = 0;
  const bf16* b = nullptr;
  bool trans_b = false;
  int64_t ldb = 0;
  void* d = nullptr;  // bf16 or fp32 per d_type
  DType d_type = DType::kBf16;
  int64_t ldd = 0;
  float alpha = 1.0f;
  float beta = 0.0f;           // 0: overwrite D; 1: accumulate into D
  const bf16* bias = nullptr;  // [n], added to every row (bf16 output only)
  int batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;  // elements between batch entries
};

class Matmul {
 public:
  // Recommended workspace for Hopper (cuBLAS documentation: 32 MiB).
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // `workspace` (device, >= workspace_bytes, 256-byte aligned) is owned by the caller.
  static StatusOr<std::unique_ptr<Matmul>> Create(void* workspace, size_t workspace_bytes);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // Checks the arguments (shapes positive, leading dims large enough, bias only
  // with bf16 output) and enqueues the product on `stream`.
  Status Run(const MatmulParams& p, cudaStream_t stream);

  size_t cached_shapes() const { return cache_.size(); }

 private:
  struct Plan;  // descriptors + layouts + chosen algorithm (matmul.cu)
  using Key = std::array<int64_t, 18>;
  Matmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes);
  StatusOr<const Plan*> GetPlan(const MatmulParams& p, const Key& key);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, std::unique_ptr<Plan>> cache_;
};

}  // namespace p3d
