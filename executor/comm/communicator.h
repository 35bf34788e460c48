// Communicator: one NCCL communicator (the world, or a TP / DP / PP / model-
// parallel group) with typed wrappers for the collectives the executor uses,
// and a watchdog so that no wait can hang.
//
// Communicators are NONBLOCKING by default (ncclConfig_t.blocking = 0): an NCCL
// call may return before NCCL has finished it (even before it is on the
// stream), so nothing inside NCCL can block the host forever. Every wait
// polls instead:
//   - WaitReady: ncclCommGetAsyncError until the call left ncclInProgress;
//   - Wait(stream): cudaStreamQuery until the stream drained, checking
//     ncclCommGetAsyncError on the way;
// both against a deadline (CommOptions::timeout, the CLI's --nccl-timeout-s).
// On an NCCL error or when the deadline passes, the Watchdog reports the
// failure (WatchdogHooks::on_fire), then aborts EVERY communicator it guards,
// all at once, each ncclCommAbort on its own thread (in-flight kernels exit;
// one after another they can deadlock, bounded_abort.h says why), waiting at
// most CommOptions::abort_timeout for them; the call returns Status::Internal
// naming host, rank, group, operation and cause, e.g. "gpu-3 rank 1 group dp
// (rank 1 of 2): all-reduce of 1048576 x float32 did not finish within 2.0 s
// (timeout: ...); aborted 5 communicators". A rank that died or skipped a
// collective therefore ends every other rank with a clear error within
// timeout + abort_timeout. After an abort every call fails fast with the
// first error.
//
// Collective wrappers enqueue on `stream` and return once NCCL has accepted
// the work; they do not wait for the result (call Wait, or order later work
// on the same stream). Counts are in ELEMENTS of `type`.
//
// Thread-safety: a rank drives its communicators from one host thread (NCCL
// forbids concurrent calls on one communicator); Watchdog::AbortAll may be
// called from any thread.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace p3d {

// "float32", "bfloat16", ...; ElementSize in bytes.
const char* NcclTypeName(ncclDataType_t type);
size_t NcclTypeSize(ncclDataType_t type);

// What the owner of the communicators learns of an abort. Both run on the
// thread that called AbortAll (the rank's main thread, or a deadline thread),
// outside the watchdog's lock; unset hooks do nothing.
struct WatchdogHooks {
  // Once, before any communicator is aborted: the full message ("host rank R
  // <group and operation or other reason>; aborting N communicators"), so it
  // is visible even if the abort never returns.
  std::function<void(const std::string& message)> on_fire;
  // When the aborts did not all return within the abort timeout: NCCL kernels
  // or threads may still run, so the process cannot free its device memory
  // (that would block) and should end; p3d-run prints and exits here. If it
  // returns, AbortAll returns the error.
  std::function<void(const std::string& message)> on_stuck;
};

// Guards a set of communicators: polls with a deadline and aborts them all
// on the first error or timeout.
class Watchdog {
 public:
  // timeout: longest wait (WaitReady, WaitStream); abort_timeout: longest
  // wait for the aborts of AbortAll.
  explicit Watchdog(std::chrono::milliseconds timeout,
                    std::chrono::milliseconds abort_timeout = std::chrono::seconds(10),
                    WatchdogHooks hooks = {})
      : timeout_(timeout), abort_timeout_(abort_timeout), hooks_(std::move(hooks)) {}
  std::chrono::milliseconds timeout() const { return timeout_; }
  std::chrono::milliseconds abort_timeout() const { return abort_timeout_; }

  void Guard(ncclComm_t comm);
  // Removes a communicator that was destroyed cleanly.
  void Release(ncclComm_t comm);

  // Waits until `comm` left ncclInProgress (the last nonblocking call
  // finished its host-side work). `what` names the group and operation.
  Status WaitReady(ncclComm_t comm, const std::string& what);
  // Waits until `stream` has no pending work, failing on an asynchronous
  // NCCL error of `comm` or at the deadline.
  Status WaitStream(ncclComm_t comm, cudaStream_t stream, const std::string& what);

  // Aborts every guarded communicator (idempotent: later calls return the
  // first error at once) and returns Status::Internal with the first reason.
  // Reports through the hooks; returns within abort_timeout (plus the hooks).
  Status AbortAll(const std::string& reason);
  // OK until an abort; then the first reason, so later calls fail fast.
  Status status() const;
  int num_guarded() const;

 private:
  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds abort_timeout_;
  const WatchdogHooks hooks_;
  mutable std::mutex mu_;
  std::vector<ncclComm_t> comms_;  // guarded by mu_
  std::string abort_reason_;       // guarded by mu_; empty until aborted
};

// One side of a grouped point-to-point exchange.
struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind = Kind::kSend;
  int peer = 0;            // rank inside this communicator
  void* buffer = nullptr;  // device memory
  size_t count = 0;        // elements
  ncclDataType_t type = ncclFloat32;
};

// One reduce-scatter of a group: `send` holds size() * recv_count elements,
// rank r gets the reduced block r in `recv` (in place when recv is block r of send).
struct ReduceScatterOp {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t recv_count = 0;
};

class Communicator {
 public:
  // Takes ownership of `comm`, which `watchdog` guards. `name` is the group
  // kind ("world", "tp", "dp", "pp", "mp").
  Communicator(std::string name, ncclComm_t comm, int rank, int size,
               std::shared_ptr<Watchdog> watchdog);
  ~Communicator();  // finalizes (bounded by the watchdog) or aborts
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  const std::string& name() const { return name_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  ncclComm_t get() const { return comm_; }
  Watchdog& watchdog() const { return *watchdog_; }

  // recv[i] = op over ranks of send[i], i < count (in place if send == recv).
  Status AllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                   cudaStream_t stream);
  // send holds size() * recv_count elements; rank r gets the reduced block r.
  Status ReduceScatter(const void* send, void* recv, size_t recv_count, ncclDataType_t type,
                       ncclRedOp_t op, cudaStream_t stream);
  // Several reduce-scatters as one NCCL group (one launch; a single op is a
  // plain ReduceScatter): the ZeRO-2/3 reduction of a gradient bucket.
  Status ReduceScatterGroup(std::span<const ReduceScatterOp> ops, ncclDataType_t type,
                            ncclRedOp_t op, cudaStream_t stream);
  // recv holds size() * send_count elements: block r comes from rank r.
  Status AllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                   cudaStream_t stream);
  // recv = root's send on every rank.
  Status Broadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root,
                   cudaStream_t stream);
  // All `ops` as one NCCL group (so a send/recv pair between two ranks
  // cannot deadlock); typically the pipeline's activation exchange.
  Status SendRecv(std::span<const P2POp> ops, cudaStream_t stream);

  // Waits (watchdog-bounded) until `stream` drained; the error names the last
  // operation this communicator enqueued on it.
  Status Wait(cudaStream_t stream);

 private:
  // Host-side completion of an enqueued call, then records it for Wait().
  Status Enqueued(ncclResult_t result, const char* call, cudaStream_t stream, std::string what);
  // The n calls of `call` (each returning its result and its NCCL function's
  // name) inside ncclGroupStart / ncclGroupEnd, enqueued as `what`.
  Status EnqueueGroup(size_t n,
                      const std::function<std::pair<ncclResult_t, const char*>(size_t)>& call,
                      cudaStream_t stream, std::string what);
  std::string Describe(const std::string& op) const;

  std::string name_;
  ncclComm_t comm_;
  int rank_;
  int size_;
  std::shared_ptr<Watchdog> watchdog_;
  std::map<cudaStream_t, std::string> last_op_;  // per stream, for error messages
};

}  // namespace p3d
