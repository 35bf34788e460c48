// Rank-0 TCP rendezvous: rank 0 hands one opaque blob (the 128-byte
// ncclUniqueId) to every other rank, over plain POSIX sockets, before NCCL
// exists. Every call has a deadline and fails with a clear error when it
// passes (naming the ranks that never arrived), so a missing rank never
// makes the job hang forever.
//
// Rounds: a program may rendezvous several times on one port (one per
// communicator it builds); `round` numbers them 0, 1, 2, ... and every rank
// passes the same sequence. A rank that knocks for a later round while rank 0
// still serves an earlier one is told to retry.
//
// Protocol (all integers 32-bit, network byte order):
//   rank r -> rank 0:  "P3DR", version 2, round, r, world_size
//   rank 0 -> rank r:  code (0 ok, 1 error, 2 retry), length, then `length`
//                      bytes: the blob, or an error message to report.
// Rank 0 rejects a rank out of range, a rank seen twice, an earlier round, or
// a world size that differs from its own; it answers the offender with the
// reason and fails.
//
// Thread-safety: a RendezvousServer is used by one thread; distinct servers
// and clients may run concurrently (the tests run a world in threads).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "executor/host/launch.h"

namespace p3d {

class RendezvousServer {
 public:
  // Binds and listens on all IPv4 interfaces at `port` (0: an ephemeral port,
  // see port()). Errors: IoError naming the port and the system error.
  static StatusOr<std::unique_ptr<RendezvousServer>> Listen(int port);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;

  int port() const { return port_; }
  // Sends `blob` to ranks 1..world_size-1 as they connect; returns when all
  // have it, or IoError "rendezvous timed out after T s ... missing ranks: ..."
  // once `timeout` has passed.
  Status Serve(std::string_view blob, int world_size, uint32_t round,
               std::chrono::milliseconds timeout);

 private:
  RendezvousServer(int fd, int port) : fd_(fd), port_(port) {}
  int fd_;
  int port_;
};

// Rank `rank` (> 0) fetches the blob from rank 0 at addr:port, retrying the
// connection until rank 0 listens or `timeout` passes (IoError naming the
// address and the last system error).
StatusOr<std::string> RendezvousFetch(const std::string& addr, int port, int rank, int world_size,
                                      uint32_t round, std::chrono::milliseconds timeout);

// Rank 0 serves `blob` on info.master_port; other ranks fetch it from
// info.master_addr:master_port and ignore `blob`. With one rank, returns blob.
StatusOr<std::string> ShareFromRankZero(const LaunchInfo& info, uint32_t round,
                                        std::string_view blob, std::chrono::milliseconds timeout);

}  // namespace p3d
