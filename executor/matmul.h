// Matmul: the one wrapper through which the executor runs every matrix multiply
// (cuBLASLt; bf16 inputs, fp32 accumulation).
//
// All matrices are ROW-MAJOR, as in PyTorch:
//   D[m,n] = alpha * op(A)[m,k] @ op(B)[k,n] + beta * D[m,n]  (+ bias[n] per row)
// A is stored as [m,k] (trans_a = false) or [k,m] (trans_a = true), B as [k,n]
// or [n,k]; ld* are row strides in elements (0 = densely packed). A linear
// layer y = x @ W^T with W stored [out,in] is {m=T, n=out, k=in, trans_b=true}.
// beta = 1 accumulates into D (used for fp32 gradient accumulation across
// micro-batches).
// Epilogues (cuBLASLt fuses them into the GEMM's store, so the elementwise pass
// and its HBM round trip disappear; bf16 output only for the GELU ones):
//   kGeluAux   D = gelu(op(A) op(B) + bias); aux [m, n] (row stride n) receives
//              the pre-activation op(A) op(B) + bias, for the backward.
//   kDGelu     D = (op(A) op(B)) * gelu'(aux), aux the forward's pre-activation.
//   a_row_sums [m] = sum over k of op(A)[m, k], in D's type, WRITTEN (not
//              accumulated): the bias gradient of a weight-gradient GEMM
//              dW = dY^T X, whose A is dY^T (cuBLASLt's BGRADB).
// cuBLASLt's GELU is the tanh approximation, as executor/kernels/activation.h. Strided-batched: `batch` independent products whose operands
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

enum class Epilogue { kNone, kGeluAux, kDGelu };

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
  Epilogue epilogue = Epilogue::kNone;
  bf16* aux = nullptr;          // kGeluAux: written; kDGelu: read
  void* a_row_sums = nullptr;   // [m], D's type; no batch, no bias, no GELU epilogue with it
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

  // Checks the arguments (shapes positive, leading dims large enough, bias and
  // GELU epilogues only with bf16 output, epilogue operands present) and
  // enqueues the product on `stream`.
  Status Run(const MatmulParams& p, cudaStream_t stream);

  size_t cached_shapes() const { return cache_.size(); }

 private:
  struct Plan;  // descriptors + layouts + chosen algorithm (matmul.cu)
  using Key = std::array<int64_t, 21>;
  Matmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes);
  StatusOr<const Plan*> GetPlan(const MatmulParams& p, const Key& key);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, std::unique_ptr<Plan>> cache_;
};

}  // namespace p3d
