#include "executor/host/launch.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

#include "common/enum_names.h"

namespace p3d {
namespace {

class ProcessEnvImpl : public Env {
 public:
  std::optional<std::string> Get(const std::string& name) const override {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  }
};

// The variable names one launcher uses for rank, world size and local rank.
struct LauncherVars {
  Launcher launcher;
  const char* rank;
  const char* world;
  const char* local_rank;
};

constexpr LauncherVars kLaunchers[] = {
    {Launcher::kTorchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {Launcher::kOpenMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK"},
    {Launcher::kSlurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

// Reads a required integer variable; the error names it and the launcher.
StatusOr<int> GetInt(const Env& env, const char* name, Launcher launcher) {
  const std::optional<std::string> v = env.Get(name);
  if (!v) {
    return Status::InvalidArgument(
        fmt::format("{} is not set ({} launch detected)", name, LauncherName(launcher)));
  }
  int out = 0;
  const char* end = v->data() + v->size();
  auto [ptr, ec] = std::from_chars(v->data(), end, out);
  if (v->empty() || ec != std::errc() || ptr != end) {
    return Status::InvalidArgument(fmt::format("{}='{}' is not an integer", name, *v));
  }
  return out;
}

}  // namespace

const Env& ProcessEnv() {
  static const ProcessEnvImpl env;
  return env;
}

std::optional<std::string> MapEnv::Get(const std::string& name) const {
  auto it = vars_.find(name);
  if (it == vars_.end()) return std::nullopt;
  return it->second;
}

constexpr EnumEntry<Launcher> kLauncherNames[] = {{Launcher::kNone, "none"},
                                                  {Launcher::kTorchrun, "torchrun"},
                                                  {Launcher::kOpenMpi, "openmpi"},
                                                  {Launcher::kSlurm, "slurm"}};

const char* LauncherName(Launcher l) { return EnumName(kLauncherNames, l); }

StatusOr<LaunchInfo> ParseLaunchEnv(const Env& env) {
  LaunchInfo info;
  const LauncherVars* vars = nullptr;
  for (const LauncherVars& l : kLaunchers) {
    // torchrun's marker is either of its variables, so a half-set pair is reported.
    const bool present = env.Get(l.rank).has_value() ||
                         (l.launcher == Launcher::kTorchrun && env.Get(l.world).has_value());
    if (present) {
      vars = &l;
      break;
    }
  }
  if (vars == nullptr) return info;  // a single process

  info.launcher = vars->launcher;
  P3D_ASSIGN_OR_RETURN(info.rank, GetInt(env, vars->rank, info.launcher));
  P3D_ASSIGN_OR_RETURN(info.world_size, GetInt(env, vars->world, info.launcher));
  P3D_ASSIGN_OR_RETURN(info.local_rank, GetInt(env, vars->local_rank, info.launcher));
  if (info.world_size < 1) {
    return Status::InvalidArgument(
        fmt::format("{}={} must be at least 1", vars->world, info.world_size));
  }
  if (info.rank < 0 || info.rank >= info.world_size) {
    return Status::InvalidArgument(fmt::format("{}={} is outside [0, {}={})", vars->rank, info.rank,
                                               vars->world, info.world_size));
  }
  if (info.local_rank < 0 || info.local_rank >= info.world_size) {
    return Status::InvalidArgument(fmt::format("{}={} is outside [0, {}={})", vars->local_rank,
                                               info.local_rank, vars->world, info.world_size));
  }

  const std::optional<std::string> addr = env.Get("MASTER_ADDR");
  const bool has_port = env.Get("MASTER_PORT").has_value();
  if (info.world_size == 1 && !addr && !has_port) return info;
  if (!addr || addr->empty()) {
    return Status::InvalidArgument(fmt::format(
        "MASTER_ADDR is not set: {} ranks need the address of rank 0 for the rendezvous",
        info.world_size));
  }
  info.master_addr = *addr;
  if (!has_port) {
    return Status::InvalidArgument(
        fmt::format("MASTER_PORT is not set: {} ranks need rank 0's TCP port for the rendezvous",
                    info.world_size));
  }
  P3D_ASSIGN_OR_RETURN(info.master_port, GetInt(env, "MASTER_PORT", info.launcher));
  if (info.master_port < 1 || info.master_port > 65535) {
    return Status::InvalidArgument(
        fmt::format("MASTER_PORT={} is outside [1, 65535]", info.master_port));
  }
  return info;
}

}  // namespace p3d
