#include "common/rank_grid.h"

#include <fmt/format.h>

#include <cassert>

#include "common/enum_names.h"

namespace p3d {

constexpr EnumEntry<GroupKind> kGroupKindNames[] = {{GroupKind::kTensor, "tp"},
                                                    {GroupKind::kData, "dp"},
                                                    {GroupKind::kPipeline, "pp"},
                                                    {GroupKind::kModel, "mp"}};

const char* GroupKindName(GroupKind kind) { return EnumName(kGroupKindNames, kind); }

int RankStride(GroupKind kind, int tp, int cp, int dp) {
  switch (kind) {
    case GroupKind::kTensor:
      return 1;
    case GroupKind::kData:
      return tp * cp;
    case GroupKind::kPipeline:
      return tp * cp * dp;
    case GroupKind::kModel:
      return -1;
  }
  return -1;
}

GroupSpan PlanGroupSpan(PlanGroup group, const Plan& p) {
  const int shard = p.zero_shard > 0 ? p.zero_shard : p.grad_group();
  const bool pp_first = p.placement == Placement::kPpBeforeDp;
  // Consecutive members of the gradient group (DP x CP): TP apart, or with
  // tp-pp-dp a whole pipeline (TP x PP ranks) apart.
  const int grad_stride = pp_first ? p.tp * p.pp : p.tp;
  switch (group) {
    case PlanGroup::kContext:
      return {p.cp, p.tp};
    case PlanGroup::kGradient:
      return {p.grad_group(), grad_stride};
    case PlanGroup::kShard:
      return {shard, grad_stride};
    case PlanGroup::kReplica:
      return {p.grad_group() / shard, grad_stride * shard};
    case PlanGroup::kPipeline:
      return {p.pp, pp_first ? p.tp : RankStride(GroupKind::kPipeline, p.tp, p.cp, p.dp)};
  }
  return {};
}

StatusOr<RankGrid> RankGrid::Create(int tp, int dp, int pp, int gpus_per_node) {
  if (tp < 1) return Status::InvalidArgument(fmt::format("rule tp>=1: tp={}", tp));
  if (dp < 1) return Status::InvalidArgument(fmt::format("rule dp>=1: dp={}", dp));
  if (pp < 1) return Status::InvalidArgument(fmt::format("rule pp>=1: pp={}", pp));
  if (gpus_per_node < 1) {
    return Status::InvalidArgument(
        fmt::format("rule gpus_per_node>=1: gpus_per_node={}", gpus_per_node));
  }
  const int world = tp * dp * pp;
  if (world > gpus_per_node) {
    if (world % gpus_per_node != 0) {
      return Status::InvalidArgument(fmt::format(
          "rule world%gpus_per_node: {} ranks (TP{} x DP{} x PP{}) do not fill whole nodes of {} "
          "GPUs",
          world, tp, dp, pp, gpus_per_node));
    }
    if (gpus_per_node % tp != 0) {
      return Status::InvalidArgument(fmt::format(
          "rule tp-within-node: tp={} does not divide gpus_per_node={}, so a TP group would "
          "span two nodes",
          tp, gpus_per_node));
    }
  }
  return RankGrid(tp, dp, pp, gpus_per_node);
}

RankCoords RankGrid::Coords(int rank) const {
  assert(rank >= 0 && rank < world_size());
  return RankCoords{rank % tp_, (rank / tp_) % dp_, rank / (tp_ * dp_)};
}

int RankGrid::RankOf(RankCoords c) const {
  assert(c.tp >= 0 && c.tp < tp_ && c.dp >= 0 && c.dp < dp_ && c.pp >= 0 && c.pp < pp_);
  return c.tp + tp_ * (c.dp + dp_ * c.pp);
}

int RankGrid::NumGroups(GroupKind kind) const { return world_size() / GroupSize(kind); }

int RankGrid::GroupSize(GroupKind kind) const {
  switch (kind) {
    case GroupKind::kTensor:
      return tp_;
    case GroupKind::kData:
      return dp_;
    case GroupKind::kPipeline:
      return pp_;
    case GroupKind::kModel:
      return tp_ * pp_;
  }
  return 0;
}

SplitArgs RankGrid::SplitOf(GroupKind kind, int rank) const {
  const RankCoords c = Coords(rank);
  switch (kind) {
    case GroupKind::kTensor:
      return {c.dp + dp_ * c.pp, c.tp};
    case GroupKind::kData:
      return {c.tp + tp_ * c.pp, c.dp};
    case GroupKind::kPipeline:
      return {c.tp + tp_ * c.dp, c.pp};
    case GroupKind::kModel:
      return {c.dp, c.tp + tp_ * c.pp};
  }
  return {};
}

std::vector<int> RankGrid::GroupMembers(GroupKind kind, int rank) const {
  const RankCoords c = Coords(rank);
  std::vector<int> members;
  members.reserve(GroupSize(kind));
  switch (kind) {
    case GroupKind::kTensor:
      for (int t = 0; t < tp_; ++t) members.push_back(RankOf({t, c.dp, c.pp}));
      break;
    case GroupKind::kData:
      for (int d = 0; d < dp_; ++d) members.push_back(RankOf({c.tp, d, c.pp}));
      break;
    case GroupKind::kPipeline:
      for (int p = 0; p < pp_; ++p) members.push_back(RankOf({c.tp, c.dp, p}));
      break;
    case GroupKind::kModel:
      for (int p = 0; p < pp_; ++p) {
        for (int t = 0; t < tp_; ++t) members.push_back(RankOf({t, c.dp, p}));
      }
      break;
  }
  return members;
}

std::vector<std::vector<int>> RankGrid::AllGroups(GroupKind kind) const {
  std::vector<std::vector<int>> groups(NumGroups(kind));
  for (int rank = 0; rank < world_size(); ++rank) {
    const SplitArgs s = SplitOf(kind, rank);
    if (groups[s.color].empty()) groups[s.color] = GroupMembers(kind, rank);
  }
  return groups;
}

int RankGrid::PipelinePrev(int rank, bool wrap) const {
  RankCoords c = Coords(rank);
  if (c.pp == 0 && !wrap) return -1;
  c.pp = (c.pp + pp_ - 1) % pp_;
  return RankOf(c);
}

int RankGrid::PipelineNext(int rank, bool wrap) const {
  RankCoords c = Coords(rank);
  if (c.pp == pp_ - 1 && !wrap) return -1;
  c.pp = (c.pp + 1) % pp_;
  return RankOf(c);
}

std::string RankGrid::ToString() const {
  return fmt::format("TP{} DP{} PP{} ({} ranks, {} node{} of {})", tp_, dp_, pp_, world_size(),
                     num_nodes(), num_nodes() == 1 ? "" : "s", gpus_per_node_);
}

}  // namespace p3d
