// Bounded teardown for the watchdog (communicator.h), host C++ only (no CUDA,
// no NCCL), so it is unit-tested on the CPU.
//
// Why: ncclCommAbort can block. Called on one communicator after another, the
// first abort frees device memory (an implicit device synchronisation) while a
// kernel of a LATER communicator still spins on a peer that never comes, so it
// never returns (NVIDIA/nccl#1013, pytorch#119797). And a rank whose peer is
// alive but hung may wait in NCCL's teardown for that peer. The watchdog
// therefore aborts every communicator at once, each on its own thread (each
// ncclCommAbort raises its communicator's abort flag first, so every in-flight
// kernel exits), and waits for them at most a bounded time; past it the
// process cannot clean up and must exit (WatchdogHooks::on_stuck).
#pragma once

#include <chrono>
#include <functional>
#include <vector>

namespace p3d {

// Runs every task concurrently, each on its own thread, and waits until all
// have returned or `limit` has passed. True when all returned in time (their
// threads are joined). False otherwise: the unfinished threads are detached
// and keep running (their task and its captures stay alive with them), so the
// caller should end the process soon. An empty list returns true at once.
bool RunAllWithin(std::vector<std::function<void()>> tasks, std::chrono::milliseconds limit);

// Longest a rank takes from the start of a hung wait until the watchdog has
// reported it and its aborts returned or were given up: `nccl_timeout`
// (--nccl-timeout-s) plus `abort_timeout` (CommOptions::abort_timeout).
std::chrono::milliseconds WatchdogBound(std::chrono::milliseconds nccl_timeout,
                                        std::chrono::milliseconds abort_timeout);

// p3d-run's progress deadline (no training step finished): the watchdog's
// bound plus a 20 s margin, so that a hung collective is reported by the
// watchdog, naming its group and operation, and the deadline catches only a
// rank blocked outside any watchdog-polled wait.
std::chrono::milliseconds ProgressDeadlineFor(std::chrono::milliseconds nccl_timeout,
                                              std::chrono::milliseconds abort_timeout);

}  // namespace p3d
