// The check macros of p3d's GPU-library calls, one family (in the style of
// nccl-tests' CUDACHECK): on failure they RETURN a Status::Internal whose
// message names the host, file:line, the failing expression and the library's
// own error string, e.g. "gpu-host-3 executor/matmul.cu:120: cublasLtMatmul(...)
// failed: CUBLAS_STATUS_NOT_SUPPORTED (the functionality requested is not
// supported)". Use them only in functions that return Status or StatusOr<T>.
//
//   CUDA_CHECK, CUBLAS_CHECK  here;
//   CUDNN_CHECK               executor/cudnn_graph.h;
//   NCCL_CHECK, COMM_CUDA_CHECK  executor/comm/nccl_check.h (messages also
//                             name the rank; p3d_comm uses only this header's
//                             inline parts, as it does not link p3d_executor).
// Each is P3D_GPU_CHECK with its library's result type, success test
// (Succeeded) and error string.
//
// CUDA_CHECK_LAUNCH() checks the last kernel launch (configuration errors are
// reported at launch; errors inside the kernel surface at the next synchronising
// call, which is checked the same way).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace p3d {

// "host file:line: expr failed: what". Defined in check.cc.
std::string GpuErrorMessage(const char* file, int line, const char* expr, const std::string& what);
std::string CublasStatusString(cublasStatus_t status);
// "cudaErrorMemoryAllocation (out of memory)".
inline std::string CudaErrorString(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

inline bool Succeeded(cudaError_t err) { return err == cudaSuccess; }
inline bool Succeeded(cublasStatus_t status) { return status == CUBLAS_STATUS_SUCCESS; }

}  // namespace p3d

// Evaluates `expr` (text `expr_text`) once as a `Result`; unless
// ::p3d::Succeeded(result), returns Status::Internal(message(__FILE__,
// __LINE__, expr_text, describe(result))).
#define P3D_GPU_CHECK(Result, expr, expr_text, describe, message)             \
  do {                                                                        \
    const Result p3d_gpu_result_ = (expr);                                    \
    if (!::p3d::Succeeded(p3d_gpu_result_)) {                                 \
      return ::p3d::Status::Internal(                                         \
          message(__FILE__, __LINE__, expr_text, describe(p3d_gpu_result_))); \
    }                                                                         \
  } while (0)

#define CUDA_CHECK(expr) \
  P3D_GPU_CHECK(cudaError_t, expr, #expr, ::p3d::CudaErrorString, ::p3d::GpuErrorMessage)
#define CUBLAS_CHECK(expr) \
  P3D_GPU_CHECK(cublasStatus_t, expr, #expr, ::p3d::CublasStatusString, ::p3d::GpuErrorMessage)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
