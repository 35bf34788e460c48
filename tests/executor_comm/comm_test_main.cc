// main() for the multi-GPU communication tests. Started without launcher
// variables (ctest, or by hand) it is the launcher: it exits 77 (ctest: skipped) when fewer than
// kTestRanks GPUs are visible, else runs itself as kTestRanks ranks
// (SpawnSelf) and fails when any rank fails. Started with RANK (by that
// launcher, torchrun, mpirun or srun) it is one rank: it builds the shared process
// groups and runs the tests.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "executor/host/spawn.h"
#include "tests/executor_comm/comm_test_env.h"

namespace p3d::comm_test {
namespace {

std::unique_ptr<ProcessGroups> g_groups;
LaunchInfo g_launch;
int g_gpus_per_node = 0;
uint32_t g_next_round = 1;

}  // namespace

ProcessGroups& SharedGroups() { return *g_groups; }
const LaunchInfo& Launch() { return g_launch; }
int GpusPerNode() { return g_gpus_per_node; }
uint32_t NextRendezvousRound() { return g_next_round++; }

}  // namespace p3d::comm_test

int main(int argc, char** argv) {
  using namespace p3d;
  using namespace p3d::comm_test;
  const std::vector<std::string> args(argv + 1, argv + argc);  // before gtest strips its flags
  testing::InitGoogleTest(&argc, argv);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  auto launch = ParseLaunchEnv(ProcessEnv());
  if (launch.ok() && launch->launcher == Launcher::kNone) {
    if (devices < kTestRanks) {
      std::printf("SKIPPED: needs %d GPUs, found %d\n", kTestRanks, devices);
      return 77;
    }
    const Status s = SpawnSelf(kTestRanks, args, std::chrono::seconds(150));
    if (!s.ok()) std::fprintf(stderr, "FAILED: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  if (!launch.ok()) {
    std::fprintf(stderr, "%s\n", launch.status().ToString().c_str());
    return 1;
  }
  g_launch = *launch;
  g_gpus_per_node = devices;
  auto grid = RankGrid::Create(1, launch->world_size, 1, devices);
  CommOptions options;
  options.timeout = std::chrono::seconds(60);
  options.rendezvous_timeout = std::chrono::seconds(60);
  auto groups = grid.ok() ? ProcessGroups::Create(*launch, *grid, options)
                          : StatusOr<std::unique_ptr<ProcessGroups>>(grid.status());
  if (!groups.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", launch->rank, groups.status().ToString().c_str());
    return 1;
  }
  g_groups = std::move(*groups);
  const int result = RUN_ALL_TESTS();
  g_groups.reset();
  return result;
}
