#include "executor/check.h"
#include "executor/cublaslt_plan.h"
#include "executor/fp8_matmul.h"
#include "executor/str_cat.h"

namespace p3d {

struct Fp8Matmul::Plan : CublasLtPlan {};

Fp8Matmul::Fp8Matmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}

Fp8Matmul::~Fp8Matmul() {
  cache_.clear();
  cublasLtDestroy(handle_);
}

StatusOr<std::unique_ptr<Fp8Matmul>> Fp8Matmul::Create(void* workspace, size_t workspace_bytes) {
  cublasLtHandle_t handle;
  CUBLAS_CHECK(cublasLtCreate(&handle));
  return std::unique_ptr<Fp8Matmul>(new Fp8Matmul(handle, workspace, workspace_bytes));
}

// Row-major D[m,n] = A[m,k] B[n,k]^T is column-major D^T[n,m] = B[n,k] A[m,k]^T:
// cuBLAS's A is our B (stored column-major [k,n], ld k, op T), its B our A
// (column-major [k,m], ld k, op N): the TN layout FP8 needs.
StatusOr<Fp8Matmul::Plan*> Fp8Matmul::GetPlan(const Fp8MatmulParams& p) {
  const Key key = {p.m, p.n, p.k, p.fast_accum};
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second.get();
  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  const int8_t fast = p.fast_accum ? 1 : 0;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_8F_E4M3, p.k, p.n, p.k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_8F_E4M3, p.k, p.m, p.k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_16BF, p.n, p.m, p.n));
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = workspace_bytes_;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                           sizeof(ws));
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1,
                                        &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_CHECK(st);
  if (found == 0)
    return Status::Internal(StrCat("cuBLASLt has no FP8 (E4M3 x E4M3 -> bf16) algorithm for m=", p.m, " n=", p.n,
                                   " k=", p.k, " (FP8 GEMMs need compute capability >= 8.9)"));
  plan->algo = result.algo;
  Plan* raw = plan.get();
  cache_.emplace(key, std::move(plan));
  return raw;
}

Status Fp8Matmul::Run(const Fp8MatmulParams& p, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0 || p.k <= 0)
    return Status::InvalidArgument(StrCat("fp8 matmul: m=", p.m, " n=", p.n, " k=", p.k, " must be positive"));
  if (p.k % 16 != 0)
    return Status::InvalidArgument(StrCat("fp8 matmul: k=", p.k, " must be a multiple of 16 (cuBLASLt FP8)"));
  if (!p.a || !p.b || !p.d || !p.a_scale || !p.b_scale)
    return Status::InvalidArgument("fp8 matmul: null operand or scale pointer");
  for (const void* ptr : {static_cast<const void*>(p.a), static_cast<const void*>(p.b),
                          static_cast<const void*>(p.d), static_cast<const void*>(p.a_scale),
                          static_cast<const void*>(p.b_scale)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
      return Status::InvalidArgument("fp8 matmul: operand and scale pointers must be 16-byte aligned (cuBLASLt FP8)");
  P3D_ASSIGN_OR_RETURN(Plan* plan, GetPlan(p));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p.b_scale,
                                              sizeof(p.b_scale)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p.a_scale,
                                              sizeof(p.a_scale)));
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, p.b, plan->a, p.a, plan->b, &beta, p.d, plan->d, p.d,
                              plan->d, &plan->algo, workspace_, workspace_bytes_, stream));
  return Status::Ok();
}

namespace {

__global__ void QuantizeE4m3Kernel(const float* x, fp8e4m3* y, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = fp8e4m3(x[i] * scale);  // __NV_SATFINITE: saturates at +-448
}

}  // namespace

Status QuantizeE4m3(const float* x, fp8e4m3* y, int64_t n, float scale, cudaStream_t stream) {
  if (n <= 0) return Status::Ok();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  QuantizeE4m3Kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(x, y, n, scale);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
