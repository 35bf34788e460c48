// Launch environment: who am I (rank, world size, local rank) and where is
// the rendezvous (MASTER_ADDR:MASTER_PORT), read from the variables that the
// launchers clusters already use. The executor is one process per GPU; MPI
// and Slurm are only launchers here (no MPI library is linked): `mpirun` and
// `srun` set their own variables, which are read below.
//
// Precedence (the first launcher whose marker variable is present wins):
//   1. torchrun style (also p3d-run --nproc, and hand-written scripts):
//        marker RANK or WORLD_SIZE; needs RANK, WORLD_SIZE, LOCAL_RANK.
//   2. Open MPI (mpirun / orterun / prterun):
//        marker OMPI_COMM_WORLD_RANK; needs OMPI_COMM_WORLD_RANK,
//        OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK.
//   3. Slurm (srun):
//        marker SLURM_PROCID; needs SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID.
//        Note: an sbatch script's own shell also has SLURM_PROCID=0 and the
//        job's SLURM_NTASKS; start p3d-run under `srun`, not directly.
//   4. none of the above: a single process, rank 0 of 1.
// MASTER_ADDR (host name or address of rank 0) and MASTER_PORT (its TCP
// port, 1..65535) are required whenever the world has more than one rank,
// whatever the launcher: e.g. `mpirun -x MASTER_ADDR=node0 -x MASTER_PORT=29500 ...`,
// or `export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1)`
// before `srun`. Every error names the variable that is missing or invalid.
//
// The environment is injected (Env) so tests can fake it, as in LevelDB's env.h.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace p3d {

// Read-only view of environment variables. Implementations must be safe to
// call from several threads at once.
class Env {
 public:
  virtual ~Env() = default;
  virtual std::optional<std::string> Get(const std::string& name) const = 0;
};

// The real process environment (getenv). Lives for the whole program.
const Env& ProcessEnv();

// A fixed set of variables, for tests.
class MapEnv : public Env {
 public:
  explicit MapEnv(std::map<std::string, std::string> vars) : vars_(std::move(vars)) {}
  std::optional<std::string> Get(const std::string& name) const override;

 private:
  std::map<std::string, std::string> vars_;
};

enum class Launcher { kNone, kTorchrun, kOpenMpi, kSlurm };
const char* LauncherName(Launcher l);  // "none" | "torchrun" | "openmpi" | "slurm"

struct LaunchInfo {
  Launcher launcher = Launcher::kNone;
  int rank = 0;  // global rank, [0, world_size)
  int world_size = 1;
  int local_rank = 0;       // rank within this node: selects the GPU
  std::string master_addr;  // empty when world_size == 1 and none was given
  int master_port = 0;      // 0 when world_size == 1 and none was given
};

StatusOr<LaunchInfo> ParseLaunchEnv(const Env& env);

}  // namespace p3d
