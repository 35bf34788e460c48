#include "executor/comm/communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "executor/comm/bounded_abort.h"
#include "executor/comm/nccl_check.h"

namespace p3d {
namespace {

using Clock = std::chrono::steady_clock;

// Polling back-off: yield for the first millisecond (short collectives finish
// within it), then sleep 100 us between polls.
void Backoff(Clock::time_point start) {
  if (Clock::now() - start < std::chrono::milliseconds(1)) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

std::string Seconds(std::chrono::milliseconds ms) {
  return fmt::format("{:.1f} s", ms.count() / 1000.0);
}

}  // namespace

const char* NcclTypeName(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
      return "int8";
    case ncclUint8:
      return "uint8";
    case ncclInt32:
      return "int32";
    case ncclUint32:
      return "uint32";
    case ncclInt64:
      return "int64";
    case ncclUint64:
      return "uint64";
    case ncclFloat16:
      return "float16";
    case ncclFloat32:
      return "float32";
    case ncclFloat64:
      return "float64";
    case ncclBfloat16:
      return "bfloat16";
    default:
      return "type";
  }
}

size_t NcclTypeSize(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 1;
  }
}

void Watchdog::Guard(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mu_);
  comms_.push_back(comm);
}

void Watchdog::Release(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mu_);
  comms_.erase(std::remove(comms_.begin(), comms_.end(), comm), comms_.end());
}

int Watchdog::num_guarded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(comms_.size());
}

Status Watchdog::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (abort_reason_.empty()) return Status::Ok();
  return Status::Internal("communicators were aborted earlier: " + abort_reason_);
}

Status Watchdog::AbortAll(const std::string& reason) {
  std::vector<ncclComm_t> comms;
  std::string what, count;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!abort_reason_.empty()) return Status::Internal(abort_reason_);
    comms.swap(comms_);
    what = CommLogPrefix() + " " + reason;
    count = fmt::format("{} communicator{}", comms.size(), comms.size() == 1 ? "" : "s");
    // Later callers (other threads included) fail fast from here on.
    abort_reason_ = fmt::format("{}; aborting {}", what, count);
  }
  if (hooks_.on_fire) hooks_.on_fire(fmt::format("{}; aborting {}", what, count));
  // All at once: each ncclCommAbort first raises its communicator's abort
  // flag, so every in-flight kernel exits before any abort frees memory (which
  // waits for the kernels of communicators not yet aborted). Results carry no
  // further information for us. A new thread starts on device 0, so each
  // first selects its communicator's device.
  std::vector<std::function<void()>> aborts;
  for (ncclComm_t comm : comms) {
    aborts.push_back([comm] {
      int device = -1;
      if (ncclCommCuDevice(comm, &device) == ncclSuccess) (void)cudaSetDevice(device);
      (void)ncclCommAbort(comm);
    });
  }
  const bool done = RunAllWithin(std::move(aborts), abort_timeout_);
  const std::string message =
      done ? fmt::format("{}; aborted {}", what, count)
           : fmt::format(
                 "{}; ncclCommAbort of {} did not return within {} (a peer may still hold them): "
                 "this process cannot clean up and must exit",
                 what, count, Seconds(abort_timeout_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    abort_reason_ = message;
  }
  if (!done && hooks_.on_stuck) hooks_.on_stuck(message);
  return Status::Internal(message);
}

Status Watchdog::WaitReady(ncclComm_t comm, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    P3D_RETURN_IF_ERROR(status());
    ncclResult_t state = ncclSuccess;
    const ncclResult_t res = ncclCommGetAsyncError(comm, &state);
    if (res != ncclSuccess) {
      return AbortAll(
          fmt::format("{}: ncclCommGetAsyncError failed: {}", what, NcclResultString(res)));
    }
    if (state == ncclSuccess) return Status::Ok();
    if (state != ncclInProgress) {
      return AbortAll(fmt::format("{}: NCCL reported {}", what, NcclResultString(state)));
    }
    if (Clock::now() - start > timeout_) {
      return AbortAll(fmt::format("{}: NCCL did not finish the call within {} (timeout)", what,
                                  Seconds(timeout_)));
    }
    Backoff(start);
  }
}

Status Watchdog::WaitStream(ncclComm_t comm, cudaStream_t stream, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    P3D_RETURN_IF_ERROR(status());
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return Status::Ok();
    if (q != cudaErrorNotReady) {
      return AbortAll(fmt::format("{}: CUDA error on the stream: {}", what, CudaErrorString(q)));
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t res = ncclCommGetAsyncError(comm, &state);
    if (res != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
      return AbortAll(fmt::format("{}: NCCL reported {}", what,
                                  NcclResultString(res != ncclSuccess ? res : state)));
    }
    if (Clock::now() - start > timeout_) {
      return AbortAll(
          fmt::format("{} did not finish within {} (timeout: a rank died, hangs or skipped it)",
                      what, Seconds(timeout_)));
    }
    Backoff(start);
  }
}

Communicator::Communicator(std::string name, ncclComm_t comm, int rank, int size,
                           std::shared_ptr<Watchdog> watchdog)
    : name_(std::move(name)),
      comm_(comm),
      rank_(rank),
      size_(size),
      watchdog_(std::move(watchdog)) {
  watchdog_->Guard(comm_);
}

Communicator::~Communicator() {
  if (!watchdog_->status().ok()) return;  // aborted: NCCL already freed it
  const ncclResult_t res = ncclCommFinalize(comm_);
  if ((res == ncclSuccess || res == ncclInProgress) &&
      watchdog_->WaitReady(comm_, Describe("finalize")).ok()) {
    watchdog_->Release(comm_);
    (void)ncclCommDestroy(comm_);
    return;
  }
  (void)watchdog_->AbortAll(Describe("finalize failed"));
}

std::string Communicator::Describe(const std::string& op) const {
  return fmt::format("group {} (rank {} of {}): {}", name_, rank_, size_, op);
}

Status Communicator::Enqueued(ncclResult_t result, const char* call, cudaStream_t stream,
                              std::string what) {
  if (result != ncclSuccess && result != ncclInProgress) {
    return watchdog_->AbortAll(
        fmt::format("{}: {} failed: {}", what, call, NcclResultString(result)));
  }
  P3D_RETURN_IF_ERROR(watchdog_->WaitReady(comm_, what));
  last_op_[stream] = std::move(what);
  return Status::Ok();
}

Status Communicator::AllReduce(const void* send, void* recv, size_t count, ncclDataType_t type,
                               ncclRedOp_t op, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(watchdog_->status());
  return Enqueued(ncclAllReduce(send, recv, count, type, op, comm_, stream), "ncclAllReduce",
                  stream,
                  Describe(fmt::format("all-reduce of {} x {}", count, NcclTypeName(type))));
}

Status Communicator::ReduceScatter(const void* send, void* recv, size_t recv_count,
                                   ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(watchdog_->status());
  return Enqueued(
      ncclReduceScatter(send, recv, recv_count, type, op, comm_, stream), "ncclReduceScatter",
      stream,
      Describe(fmt::format("reduce-scatter of {} x {} per rank", recv_count, NcclTypeName(type))));
}

Status Communicator::AllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type,
                               cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(watchdog_->status());
  return Enqueued(
      ncclAllGather(send, recv, send_count, type, comm_, stream), "ncclAllGather", stream,
      Describe(fmt::format("all-gather of {} x {} per rank", send_count, NcclTypeName(type))));
}

Status Communicator::Broadcast(const void* send, void* recv, size_t count, ncclDataType_t type,
                               int root, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(watchdog_->status());
  return Enqueued(
      ncclBroadcast(send, recv, count, type, root, comm_, stream), "ncclBroadcast", stream,
      Describe(fmt::format("broadcast of {} x {} from rank {}", count, NcclTypeName(type), root)));
}

Status Communicator::EnqueueGroup(
    size_t n, const std::function<std::pair<ncclResult_t, const char*>(size_t)>& call,
    cudaStream_t stream, std::string what) {
  ncclResult_t res = ncclGroupStart();
  if (res != ncclSuccess) return Enqueued(res, "ncclGroupStart", stream, std::move(what));
  ncclResult_t first_error = ncclSuccess;
  const char* failed_call = nullptr;
  for (size_t i = 0; i < n; ++i) {
    const auto [r, name] = call(i);
    if (r != ncclSuccess && r != ncclInProgress && first_error == ncclSuccess) {
      first_error = r;
      failed_call = name;
    }
  }
  res = ncclGroupEnd();  // always closes the group, even after an error inside it
  if (first_error != ncclSuccess)
    return Enqueued(first_error, failed_call, stream, std::move(what));
  return Enqueued(res, "ncclGroupEnd", stream, std::move(what));
}

Status Communicator::SendRecv(std::span<const P2POp> ops, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(watchdog_->status());
  std::string what =
      fmt::format("grouped send/recv ({} op{}", ops.size(), ops.size() == 1 ? "" : "s");
  for (size_t i = 0; i < ops.size() && i < 4; ++i) {
    const P2POp& op = ops[i];
    const bool send = op.kind == P2POp::Kind::kSend;
    what += fmt::format("{}{} {} x {} {} {}", i == 0 ? ": " : ", ", send ? "send" : "recv",
                        op.count, NcclTypeName(op.type), send ? "to" : "from", op.peer);
  }
  return EnqueueGroup(
      ops.size(),
      [&](size_t i) -> std::pair<ncclResult_t, const char*> {
        const P2POp& op = ops[i];
        if (op.kind == P2POp::Kind::kSend)
          return {ncclSend(op.buffer, op.count, op.type, op.peer, comm_, stream), "ncclSend"};
        return {ncclRecv(op.buffer, op.count, op.type, op.peer, comm_, stream), "ncclRecv"};
      },
      stream, Describe(what + (ops.size() > 4 ? ", ...)" : ")")));
}

Status Communicator::ReduceScatterGroup(std::span<const ReduceScatterOp> ops, ncclDataType_t type,
                                        ncclRedOp_t op, cudaStream_t stream) {
  if (ops.size() == 1)
    return ReduceScatter(ops[0].send, ops[0].recv, ops[0].recv_count, type, op, stream);
  P3D_RETURN_IF_ERROR(watchdog_->status());
  size_t total = 0;
  for (const ReduceScatterOp& r : ops) total += r.recv_count;
  return EnqueueGroup(
      ops.size(),
      [&](size_t i) -> std::pair<ncclResult_t, const char*> {
        const ReduceScatterOp& r = ops[i];
        return {ncclReduceScatter(r.send, r.recv, r.recv_count, type, op, comm_, stream),
                "ncclReduceScatter"};
      },
      stream,
      Describe(fmt::format("grouped reduce-scatter ({} ops, {} x {} per rank)", ops.size(), total,
                           NcclTypeName(type))));
}

Status Communicator::Wait(cudaStream_t stream) {
  auto it = last_op_.find(stream);
  const std::string what = it == last_op_.end()
                               ? Describe("wait on a stream with no operation of this group")
                               : it->second;
  return watchdog_->WaitStream(comm_, stream, what);
}

}  // namespace p3d
