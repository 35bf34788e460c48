// Check macros for CUDA runtime and cuBLASLt calls (in the style of nccl-tests'
// CUDACHECK): on failure they RETURN a Status::Internal whose message names the
// host, file:line, the failing expression and the library's own error string,
// e.g. "gpu-host-3 executor/matmul.cu:120: cublasLtMatmul(...) failed:
// CUBLAS_STATUS_NOT_SUPPORTED (the functionality requested is not supported)".
// Use them only in functions that return Status or StatusOr<T>.
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

}  // namespace p3d

#define CUDA_CHECK(expr)                                                               \
  do {                                                                                 \
    cudaError_t p3d_cuda_err_ = (expr);                                                \
    if (p3d_cuda_err_ != cudaSuccess) {                                                \
      return ::p3d::Status::Internal(                                                  \
          ::p3d::GpuErrorMessage(__FILE__, __LINE__, #expr,                            \
                                 std::string(cudaGetErrorName(p3d_cuda_err_)) + " (" + \
                                     cudaGetErrorString(p3d_cuda_err_) + ")"));        \
    }                                                                                  \
  } while (0)

#define CUBLAS_CHECK(expr)                                                        \
  do {                                                                            \
    cublasStatus_t p3d_cublas_st_ = (expr);                                       \
    if (p3d_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                \
      return ::p3d::Status::Internal(::p3d::GpuErrorMessage(                      \
          __FILE__, __LINE__, #expr, ::p3d::CublasStatusString(p3d_cublas_st_))); \
    }                                                                             \
  } while (0)

#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
