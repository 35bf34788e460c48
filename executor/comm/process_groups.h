// ProcessGroups: the world communicator and its TP / DP / PP / model-parallel
// sub-communicators for one rank, built in the shared rank layout
// (common/rank_grid.h: rank = tp + TP * (dp + DP * pp)).
//
// Bootstrap (collective: every rank of the launch calls Create):
//   1. cudaSetDevice(launch.local_rank); NCCL_NVLS_ENABLE=0 unless set (p3d
//      never uses NVLink multicast);
//   2. rank 0 makes an ncclUniqueId; the TCP rendezvous (rendezvous.h) hands
//      it to every rank (round `round`, bounded by rendezvous_timeout);
//   3. ncclCommInitRankConfig, nonblocking (default), polled by the watchdog;
//   4. ncclCommSplit(world, color, key) per group kind with RankGrid::SplitOf,
//      so group(kTensor).rank() == tp, group(kData).rank() == dp, etc.
// Every step is deadline-bounded: a missing rank fails Create with an error
// instead of hanging. All communicators share one Watchdog: an error or a
// timeout in any of them aborts all of them (see communicator.h).
//
// Thread-safety: as Communicator (one host thread per rank).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "executor/comm/communicator.h"
#include "executor/host/launch.h"
#include "common/rank_grid.h"

namespace p3d {

struct CommOptions {
  // Longest wait for any NCCL call or collective (--nccl-timeout-s).
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Longest wait for the aborts after an error or timeout (all communicators
  // at once); past it the watchdog gives up on them (hooks.on_stuck).
  std::chrono::milliseconds abort_timeout{std::chrono::seconds(10)};
  // How the caller learns of an abort as it happens (communicator.h).
  WatchdogHooks hooks;
  // Longest wait for all ranks to reach the rendezvous.
  std::chrono::milliseconds rendezvous_timeout{std::chrono::minutes(5)};
  // Rendezvous round (see rendezvous.h): 0 for the first ProcessGroups a
  // program creates, then 1, 2, ... on every rank alike.
  uint32_t round = 0;
  // Blocking communicators (ncclConfig_t.blocking = 1) let NCCL block inside
  // init, split and enqueue (e.g. while a peer is missing), where only NCCL's
  // own timeouts apply; the watchdog still bounds every Wait. For measuring
  // the enqueue overhead of nonblocking mode (p3d-comm-bench --blocking).
  bool blocking = false;
};

class ProcessGroups {
 public:
  // Errors: "rule world_size" when the launcher's world differs from the
  // grid's TP*DP*PP; rendezvous, CUDA and NCCL failures (naming host, rank
  // and call); watchdog timeouts.
  static StatusOr<std::unique_ptr<ProcessGroups>> Create(const LaunchInfo& launch,
                                                         const RankGrid& grid,
                                                         const CommOptions& options);
  ~ProcessGroups();  // sub-communicators first, then the world (bounded)

  const RankGrid& grid() const { return grid_; }
  int rank() const { return world_->rank(); }
  Communicator& world() { return *world_; }
  Communicator& group(GroupKind kind) { return *groups_[static_cast<int>(kind)]; }
  Watchdog& watchdog() { return *watchdog_; }

  // Aborts every communicator, e.g. when this rank fails outside NCCL and
  // its peers must not wait for it until their deadline.
  Status AbortAll(const std::string& reason) { return watchdog_->AbortAll(reason); }

 private:
  ProcessGroups(const RankGrid& grid, std::shared_ptr<Watchdog> watchdog)
      : grid_(grid), watchdog_(std::move(watchdog)) {}
  RankGrid grid_;
  std::shared_ptr<Watchdog> watchdog_;
  std::unique_ptr<Communicator> world_;
  std::array<std::unique_ptr<Communicator>, 4> groups_;  // indexed by GroupKind
};

}  // namespace p3d
