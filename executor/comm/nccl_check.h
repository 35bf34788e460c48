// Check macros for NCCL and for the CUDA runtime calls of the communication
// layer, of executor/check.h's family (P3D_GPU_CHECK): on failure they RETURN a
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
#include "executor/check.h"

namespace p3d {

// The global rank the macros print; -1 (printed as "rank ?") until set.
void SetCommLogRank(int rank);
// "host rank R": who is speaking, for every communication error.
std::string CommLogPrefix();
// "host rank R file:line: expr failed: what".
std::string CommErrorMessage(const char* file, int line, const char* expr, const std::string& what);
// "ncclRemoteError (remote process exited...); NCCL: <ncclGetLastError>".
std::string NcclResultString(ncclResult_t result);
// ncclInProgress counts as success (see above).
inline bool Succeeded(ncclResult_t result) {
  return result == ncclSuccess || result == ncclInProgress;
}

}  // namespace p3d

#define NCCL_CHECK(expr) \
  P3D_GPU_CHECK(ncclResult_t, expr, #expr, ::p3d::NcclResultString, ::p3d::CommErrorMessage)
#define COMM_CUDA_CHECK(expr) \
  P3D_GPU_CHECK(cudaError_t, expr, #expr, ::p3d::CudaErrorString, ::p3d::CommErrorMessage)
