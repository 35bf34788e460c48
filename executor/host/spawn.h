// Single-node spawner behind `p3d-run --nproc N`: fork/exec N copies of a
// program (normally the current binary, same arguments) as ranks 0..N-1 of
// one world, with the torchrun-style variables set for each:
//   RANK=r WORLD_SIZE=N LOCAL_RANK=r LOCAL_WORLD_SIZE=N
//   MASTER_ADDR=127.0.0.1 MASTER_PORT=<port>
// plus NCCL_NVLS_ENABLE=0 unless the caller's environment already sets it
// (p3d never uses NVLink multicast). The children see RANK, so a program
// that spawns only when RANK is unset does not spawn again.
//
// Failure handling: waits for all children; as soon as one exits non-zero or
// dies from a signal (or the optional timeout passes), the others get
// SIGTERM, then SIGKILL after `kill_grace`, and the error names the rank and
// how it ended, e.g. "rank 1 (pid 4242) exited with status 3". Children also
// get SIGKILL if the spawning thread dies (PR_SET_PDEATHSIG), so none are
// orphaned.
//
// Thread-safety: SpawnLocalRanks blocks the calling thread until every child
// has been reaped; it reaps only its own children (by pid).
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace p3d {

struct SpawnOptions {
  int nproc = 1;
  // argv[0] is the path to execute (no PATH search), e.g. CurrentExecutable().
  std::vector<std::string> argv;
  int master_port = 0;  // 0: pick a free port (FindFreePort)
  // Extra variables for every child (override inherited ones; RANK etc. win).
  std::vector<std::pair<std::string, std::string>> env;
  std::chrono::milliseconds timeout{0};  // 0: no limit
  std::chrono::milliseconds kill_grace{5000};
};

// Errors: InvalidArgument "rule nproc>=1" / "rule argv non-empty"; IoError
// when fork/exec fails ("rank 0: cannot execute '/x': No such file or
// directory"), when a rank fails, or when the timeout passes.
Status SpawnLocalRanks(const SpawnOptions& options);

// Runs this program again as ranks 0..nproc-1 with arguments `args` (argv[1..]):
// SpawnLocalRanks with argv[0] = CurrentExecutable(). For `--nproc N` front
// ends and multi-GPU test drivers, which call it only when RANK is unset.
Status SpawnSelf(int nproc, const std::vector<std::string>& args,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// The running program's path (/proc/self/exe).
StatusOr<std::string> CurrentExecutable();

// An unused TCP port on this host (bound to port 0, then released; another
// process could take it in between, which the rendezvous reports clearly).
StatusOr<int> FindFreePort();

}  // namespace p3d
