#include "executor/check.h"
#include "executor/cublaslt_plan.h"
#include "executor/matmul.h"
#include "executor/str_cat.h"

namespace p3d {
namespace {

// Largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by
// operand alignment, so the cache key and the heuristic query both carry it.
// With batch > 1 every entry's start counts, so the stride (in bytes) joins in.
int64_t Alignment(const void* ptr, int64_t stride_bytes = 0) {
  auto v = reinterpret_cast<uintptr_t>(ptr) | static_cast<uintptr_t>(stride_bytes);
  int64_t a = 256;
  while (a > 1 && (v % a) != 0) a /= 2;
  return a;
}

cudaDataType_t CudaType(DType t) { return t == DType::kBf16 ? CUDA_R_16BF : CUDA_R_32F; }

// Row sums of our A are cuBLAS's BGRADB: our A is cuBLAS's B (see GetPlan).
cublasLtEpilogue_t EpilogueOf(const MatmulParams& p) {
  if (p.a_row_sums) return CUBLASLT_EPILOGUE_BGRADB;
  switch (p.epilogue) {
    case Epilogue::kGeluAux:
      return p.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    case Epilogue::kDGelu:
      return CUBLASLT_EPILOGUE_DGELU;
    case Epilogue::kNone:
      break;
  }
  return p.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

struct Matmul::Plan : CublasLtPlan {};

Matmul::Matmul(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
    : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}

Matmul::~Matmul() {
  cache_.clear();
  cublasLtDestroy(handle_);
}

StatusOr<std::unique_ptr<Matmul>> Matmul::Create(void* workspace, size_t workspace_bytes) {
  cublasLtHandle_t handle;
  CUBLAS_CHECK(cublasLtCreate(&handle));
  return std::unique_ptr<Matmul>(new Matmul(handle, workspace, workspace_bytes));
}

// Row-major D[m,n] = op(A) op(B) is column-major D'[n,m] = op(B)' op(A)', where X'
// is X's memory read column-major. So cuBLAS's "A" is our B and its "B" is our A,
// with cuBLAS dimensions (M, N, K) = (n, m, k).
StatusOr<const Matmul::Plan*> Matmul::GetPlan(const MatmulParams& p, const Key& key) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second.get();

  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS A = our B
  cublasOperation_t op_b = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS B = our A
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cublasLtEpilogue_t epi = EpilogueOf(p);
  if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                sizeof(epi)));
  }
  if (p.bias || p.a_row_sums) {
    // A bias is bf16; a bias gradient has D's type (cublasLt.h, BIAS_POINTER).
    cudaDataType_t bias_type = p.bias ? CUDA_R_16BF : CudaType(p.d_type);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                &bias_type, sizeof(bias_type)));
  }
  if (p.epilogue != Epilogue::kNone) {
    // The pre-activation has D's [m, n] row-major layout: cuBLAS's column-major
    // D' [n, m] with leading dimension n.
    int64_t aux_ld = p.n;
    cudaDataType_t aux_type = CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                &aux_ld, sizeof(aux_ld)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &aux_type, sizeof(aux_type)));
  }
  // Stored (column-major) shapes: cuBLAS A is our B read column-major.
  uint64_t a_rows = p.trans_b ? p.k : p.n, a_cols = p.trans_b ? p.n : p.k;
  uint64_t b_rows = p.trans_a ? p.m : p.k, b_cols = p.trans_a ? p.k : p.m;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, a_rows, a_cols, p.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, b_rows, b_cols, p.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, CudaType(p.d_type), p.n, p.m, p.ldd));
  if (p.batch > 1) {
    int32_t count = p.batch;
    struct {
      cublasLtMatrixLayout_t layout;
      int64_t stride;
    } sets[] = {{plan->a, p.stride_b}, {plan->b, p.stride_a}, {plan->d, p.stride_d}};
    for (auto& s : sets) {
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(s.layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                    &count, sizeof(count)));
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          s.layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s.stride, sizeof(s.stride)));
    }
  }

  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = workspace_bytes_;
  // key[13..15]: alignment of cuBLAS's A (our B), B (our A) and D; see Run().
  uint32_t align_a = static_cast<uint32_t>(key[13]), align_b = static_cast<uint32_t>(key[14]);
  uint32_t align_d = static_cast<uint32_t>(key[15]);
  const struct {
    cublasLtMatmulPreferenceAttributes_t attr;
    const void* value;
    size_t size;
  } prefs[] = {{CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)},
               {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)},
               {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)},
               {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)},
               {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)}};
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  for (const auto& p : prefs)
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, p.attr, p.value, p.size);
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                        pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_CHECK(st);
  if (found == 0) {
    return Status::Internal(StrCat(
        "cuBLASLt has no algorithm for m=", p.m, " n=", p.n, " k=", p.k, " trans_a=", p.trans_a,
        " trans_b=", p.trans_b, " lda=", p.lda, " ldb=", p.ldb, " ldd=", p.ldd,
        " out=", p.d_type == DType::kBf16 ? "bf16" : "fp32", " batch=", p.batch,
        " epilogue=", static_cast<int>(EpilogueOf(p))));
  }
  plan->algo = result.algo;
  const Plan* raw = plan.get();
  cache_.emplace(key, std::move(plan));
  return raw;
}

Status Matmul::Run(const MatmulParams& in, cudaStream_t stream) {
  MatmulParams p = in;
  if (p.m <= 0 || p.n <= 0 || p.k <= 0 || p.batch <= 0)
    return Status::InvalidArgument(
        StrCat("matmul: m=", p.m, " n=", p.n, " k=", p.k, " batch=", p.batch, " must be positive"));
  if (!p.a || !p.b || !p.d) return Status::InvalidArgument("matmul: null operand pointer");
  const int64_t a_cols = p.trans_a ? p.m : p.k, b_cols = p.trans_b ? p.k : p.n;
  if (p.lda == 0) p.lda = a_cols;
  if (p.ldb == 0) p.ldb = b_cols;
  if (p.ldd == 0) p.ldd = p.n;
  if (p.lda < a_cols || p.ldb < b_cols || p.ldd < p.n)
    return Status::InvalidArgument(StrCat("matmul: leading dimension too small (lda=", p.lda, " < ",
                                          a_cols, " or ldb=", p.ldb, " < ", b_cols,
                                          " or ldd=", p.ldd, " < ", p.n, ")"));
  if (p.bias && p.d_type != DType::kBf16)
    return Status::InvalidArgument("matmul: a bias epilogue needs bf16 output");
  if (p.epilogue != Epilogue::kNone &&
      (p.d_type != DType::kBf16 || !p.aux || p.batch > 1 || p.n % 8 != 0 || p.ldd != p.n))
    return Status::InvalidArgument(StrCat(
        "matmul: a GELU epilogue needs bf16 output, an aux buffer, batch 1, n % 8 == 0 and a "
        "dense D (n=", p.n, " ldd=", p.ldd, " batch=", p.batch, ")"));
  if (p.aux && p.epilogue == Epilogue::kNone)
    return Status::InvalidArgument("matmul: an aux buffer needs a GELU epilogue");
  if (p.epilogue == Epilogue::kDGelu && p.bias)
    return Status::InvalidArgument("matmul: the GELU-gradient epilogue takes no bias");
  if (p.a_row_sums && (p.bias || p.epilogue != Epilogue::kNone || p.batch > 1))
    return Status::InvalidArgument(
        "matmul: row sums of A (bias gradient) take no bias, no GELU epilogue and batch 1");

  const int64_t d_bytes = DTypeBytes(p.d_type);
  const bool batched = p.batch > 1;
  Key key = {p.m,
             p.n,
             p.k,
             p.trans_a,
             p.trans_b,
             p.lda,
             p.ldb,
             p.ldd,
             static_cast<int64_t>(p.d_type),
             p.bias != nullptr,
             p.batch,
             batched ? p.stride_a : 0,
             batched ? p.stride_b : 0,
             Alignment(p.b, batched ? p.stride_b * 2 : 0),
             Alignment(p.a, batched ? p.stride_a * 2 : 0),
             Alignment(p.d, batched ? p.stride_d * d_bytes : 0),
             batched ? p.stride_d : 0,
             p.bias ? Alignment(p.bias) : 0,
             static_cast<int64_t>(p.epilogue),
             p.aux ? Alignment(p.aux) : 0,
             p.a_row_sums ? Alignment(p.a_row_sums) : 0};
  P3D_ASSIGN_OR_RETURN(const Plan* plan, GetPlan(p, key));
  // The descriptor is cached per shape; its pointers are this call's.
  if (const void* bias = p.bias ? static_cast<const void*>(p.bias) : p.a_row_sums) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof(bias)));
  }
  if (p.aux) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &p.aux, sizeof(p.aux)));
  }
  CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &p.alpha, p.b, plan->a, p.a, plan->b, &p.beta,
                              p.d, plan->d, p.d, plan->d, &plan->algo, workspace_, workspace_bytes_,
                              stream));
  return Status::Ok();
}

}  // namespace p3d
