// Check macros for NCCL and for the CUDA runtime calls of the communication
// layer, in the style of nccl-tests' common.h: on failure they RETURN a
// Status::Internal whose message names the host, the global rank, file:line,
// the failing expression and the library's own error string, e.g.
//   "gpu-host-3 rank 5 executor/comm/communicator.cc:88: ncclAllReduce(...)
//    failed: ncclRemoteError (remote process exited or there was a network
//    error); NCCL: socket closed by peer".
// Use them only in functions that return Status or StatusOr<T>.
//
// NCCL_CHECK accepts ncclInProgress as success: p3d's communicators are
// nonblocking, so calls may return before NCCL finishes them; the caller
// then waits with the watchdog (Communicator::WaitReady).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "common/status.h"

namespace p3d {

// The global rank the macros print; -1 (printed as "rank ?") until set.
void SetCommLogRank(int rank);
// "host rank R": who is speaking, for every communication error.
std::string CommLogPrefix();
// "host rank R file:line: expr failed: what".
std::string CommErrorMessage(const char* file, int line, const char* expr, const std::string& what);
// "ncclRemoteError (remote process exited...); NCCL: <ncclGetLastError>".
std::string NcclResultString(ncclResult_t result);
std::string CudaErrorString(cudaError_t err);

}  // namespace p3d

#define NCCL_CHECK(expr)                                                       \
  do {                                                                         \
    ncclResult_t p3d_nccl_res_ = (expr);                                       \
    if (p3d_nccl_res_ != ncclSuccess && p3d_nccl_res_ != ncclInProgress) {     \
      return ::p3d::Status::Internal(::p3d::CommErrorMessage(                  \
          __FILE__, __LINE__, #expr, ::p3d::NcclResultString(p3d_nccl_res_))); \
    }                                                                          \
  } while (0)

#define COMM_CUDA_CHECK(expr)                                                      \
  do {                                                                             \
    cudaError_t p3d_comm_cuda_err_ = (expr);                                       \
    if (p3d_comm_cuda_err_ != cudaSuccess) {                                       \
      return ::p3d::Status::Internal(::p3d::CommErrorMessage(                      \
          __FILE__, __LINE__, #expr, ::p3d::CudaErrorString(p3d_comm_cuda_err_))); \
    }                                                                              \
  } while (0)
