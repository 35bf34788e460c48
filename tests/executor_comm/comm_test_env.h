// Shared state of the multi-GPU communication tests (comm_test_main.cc). Each
// rank process runs the same tests in the same order, so rendezvous rounds and
// collectives line up across ranks.
#pragma once

#include <cstdint>

#include "executor/comm/process_groups.h"
#include "executor/host/launch.h"

namespace p3d::comm_test {

inline constexpr int kTestRanks = 2;

// World and groups for the layout TP1 DP2 PP1, built before the tests run.
ProcessGroups& SharedGroups();
const LaunchInfo& Launch();
int GpusPerNode();
// Rendezvous round for the next ProcessGroups a test builds (the shared
// groups used round 0); every rank calls it in the same order.
uint32_t NextRendezvousRound();

}  // namespace p3d::comm_test
