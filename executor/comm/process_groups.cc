#include "executor/comm/process_groups.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "executor/comm/nccl_check.h"
#include "executor/host/rendezvous.h"

namespace p3d {
namespace {

constexpr GroupKind kGroupKinds[] = {GroupKind::kTensor, GroupKind::kData, GroupKind::kPipeline,
                                     GroupKind::kModel};

ncclConfig_t Config(const char* name, bool blocking) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = blocking ? 1 : 0;
  config.commName = name;
  return config;
}

}  // namespace

StatusOr<std::unique_ptr<ProcessGroups>> ProcessGroups::Create(const LaunchInfo& launch,
                                                               const RankGrid& grid,
                                                               const CommOptions& options) {
  if (launch.world_size != grid.world_size()) {
    return Status::InvalidArgument(
        fmt::format("rule world_size: the launcher started {} ranks, the layout {} needs {}",
                    launch.world_size, grid.ToString(), grid.world_size()));
  }
  SetCommLogRank(launch.rank);
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  COMM_CUDA_CHECK(cudaSetDevice(launch.local_rank));

  ncclUniqueId id{};
  if (launch.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  const std::string_view mine(reinterpret_cast<const char*>(&id), sizeof(id));
  P3D_ASSIGN_OR_RETURN(std::string shared,
                       ShareFromRankZero(launch, options.round, mine, options.rendezvous_timeout));
  if (shared.size() != sizeof(id)) {
    return Status::Internal(fmt::format("{} rendezvous gave {} bytes, an ncclUniqueId has {}",
                                        CommLogPrefix(), shared.size(), sizeof(id)));
  }
  std::memcpy(&id, shared.data(), sizeof(id));

  auto watchdog = std::make_shared<Watchdog>(options.timeout, options.abort_timeout, options.hooks);
  std::unique_ptr<ProcessGroups> pg(new ProcessGroups(grid, watchdog));
  ncclComm_t world = nullptr;
  ncclConfig_t config = Config("world", options.blocking);
  NCCL_CHECK(ncclCommInitRankConfig(&world, launch.world_size, id, launch.rank, &config));
  pg->world_ =
      std::make_unique<Communicator>("world", world, launch.rank, launch.world_size, watchdog);
  P3D_RETURN_IF_ERROR(
      watchdog->WaitReady(world, fmt::format("group world (rank {} of {}): ncclCommInitRankConfig",
                                             launch.rank, launch.world_size)));

  for (GroupKind kind : kGroupKinds) {
    const SplitArgs split = grid.SplitOf(kind, launch.rank);
    const char* name = GroupKindName(kind);
    ncclConfig_t sub_config = Config(name, options.blocking);
    ncclComm_t sub = nullptr;
    NCCL_CHECK(ncclCommSplit(world, split.color, split.key, &sub, &sub_config));
    const std::string what = fmt::format("group {} (rank {} of {}): ncclCommSplit(color {})", name,
                                         split.key, grid.GroupSize(kind), split.color);
    P3D_RETURN_IF_ERROR(watchdog->WaitReady(world, what));
    if (sub == nullptr)
      return Status::Internal(CommLogPrefix() + " " + what + " gave no communicator");
    pg->groups_[static_cast<int>(kind)] =
        std::make_unique<Communicator>(name, sub, split.key, grid.GroupSize(kind), watchdog);
    P3D_RETURN_IF_ERROR(watchdog->WaitReady(sub, what));
  }
  return pg;
}

ProcessGroups::~ProcessGroups() {
  for (auto& g : groups_) g.reset();
  world_.reset();
}

}  // namespace p3d
