// RankGrid: where each global rank sits in the DP x TP x PP layout (the
// executor's; it has no context parallel: CP = 1, refused by the p3d
// profile's "no-cp" rule), which
// ranks form its tensor-, data- and pipeline-parallel groups, and the
// (color, key) pair that builds each group with ncclCommSplit.
//
// Layout (shared with common/plan.h and the simulator; Megatron's order):
//   rank = tp + TP * (dp + DP * pp)
// TP is fastest, so a TP group is TP consecutive ranks and sits inside a
// node; PP is slowest, so a pipeline's stages are world/PP ranks apart.
//
// Worked example: 16 GPUs on 2 nodes of 8, TP=2, DP=4, PP=2.
//   rank:  0  1  2  3  4  5  6  7 |  8  9 10 11 12 13 14 15
//   tp:    0  1  0  1  0  1  0  1 |  0  1  0  1  0  1  0  1
//   dp:    0  0  1  1  2  2  3  3 |  0  0  1  1  2  2  3  3
//   pp:    0  0  0  0  0  0  0  0 |  1  1  1  1  1  1  1  1
//   node:  0  0  0  0  0  0  0  0 |  1  1  1  1  1  1  1  1
//   8 TP groups:  [0,1] [2,3] [4,5] [6,7] [8,9] [10,11] [12,13] [14,15]
//   4 DP groups:  [0,2,4,6] [1,3,5,7] [8,10,12,14] [9,11,13,15]
//   8 PP groups:  [0,8] [1,9] [2,10] [3,11] [4,12] [5,13] [6,14] [7,15]
//   4 model-parallel groups (TP x PP, one model replica per DP rank):
//                 [0,1,8,9] [2,3,10,11] [4,5,12,13] [6,7,14,15]
//   Ranks 0-7 are the first pipeline stage, 8-15 the last; rank 3's
//   pipeline next is 11, rank 11's previous is 3.
//
// ncclCommSplit: every rank of the world communicator calls
//   ncclCommSplit(world, SplitOf(kind, rank).color, SplitOf(kind, rank).key, ...)
// for each group kind; color is the group's index (ranks with equal color
// form one communicator) and key is the rank's coordinate in the group, so
// the new communicator's rank equals tp / dp / pp respectively, and members
// are ordered as GroupMembers() lists them.
//
// Thread-safety: RankGrid is an immutable value.
#pragma once

#include <string>
#include <vector>

#include "common/plan.h"
#include "common/status.h"

namespace p3d {

enum class GroupKind {
  kTensor,    // same (dp, pp); members ordered by tp
  kData,      // same (tp, pp); members ordered by dp
  kPipeline,  // same (tp, dp); members ordered by pp
  kModel,     // same dp: one model replica (TP x PP), ordered by rank; for global grad norm
};
const char* GroupKindName(GroupKind kind);  // "tp" | "dp" | "pp" | "mp"

struct RankCoords {
  int tp = 0;
  int dp = 0;
  int pp = 0;
  bool operator==(const RankCoords&) const = default;
};

// Distance in global ranks between consecutive members of a group of `kind`
// in the layout with context parallel, rank = tp + TP*(cp + CP*(dp + DP*pp))
// (common/plan.h; the executor's grid has CP = 1): tensor 1, data TP*CP,
// pipeline TP*CP*DP; -1 for kModel, whose members are not evenly spaced (TP
// consecutive ranks per stage). For the simulator's communication paths as
// much as for the executor's groups, in Megatron's default placement (the
// simulator takes a plan's placement from PlanGroupSpan).
int RankStride(GroupKind kind, int tp, int cp, int dp);

// The groups the planner's layout adds with context parallel and hybrid
// sharding, as (size, stride) runs of ranks; worked example, TP2 CP2 DP4,
// zero_shard 4 (16 ranks of one pipeline stage, tp = 0 shown):
//   rank:  0  2 |  4  6 |  8 10 | 12 14      (tp 0; cp = rank/2 % 2, dp = rank/4)
//   CP rings (kContext, size CP, stride TP):        [0,2] [4,6] [8,10] [12,14]
//   gradient group (kGradient, DP x CP, stride TP): [0,2,4,6,8,10,12,14]
//     (Megatron's data-parallel group with context parallel)
//   ZeRO shard groups (kShard, zero_shard consecutive gradient-group members):
//                                                   [0,2,4,6] [8,10,12,14]
//   replica groups (kReplica, DP x CP / zero_shard, stride TP*zero_shard):
//                                                   [0,8] [2,10] [4,12] [6,14]
//   pipeline (kPipeline, PP ranks, stride TP*CP*DP: the stage boundary
//   s | s+1 is one stride)
// With the tp-pp-dp placement (Plan::placement; CP = 1), rank =
// tp + TP*(pp + PP*dp): the pipeline's stride is TP and the gradient, shard
// and replica groups' strides are PP times the ones above. Worked example,
// TP2 PP2 DP4 (16 ranks, tp = 0 shown):
//   default:  pipeline [0,8]  [2,10] ...   gradient group [0,2,4,6]   [8,10,12,14]
//   tp-pp-dp: pipeline [0,2]  [4,6]  ...   gradient group [0,4,8,12]  [2,6,10,14]
enum class PlanGroup { kContext, kGradient, kShard, kReplica, kPipeline };
struct GroupSpan {
  int size = 1;
  int stride = 1;
};
// Preconditions: degrees >= 1; zero_shard 0 (= the gradient group) or a
// divisor of DP*CP; CP = 1 with the tp-pp-dp placement.
GroupSpan PlanGroupSpan(PlanGroup group, const Plan& plan);

// Arguments for ncclCommSplit(comm, color, key, &newcomm, config).
struct SplitArgs {
  int color = 0;  // group index: equal colors share a communicator
  int key = 0;    // rank inside the new communicator
};

class RankGrid {
 public:
  // Validates the layout. Rules (named in the error):
  //   "tp>=1", "dp>=1", "pp>=1", "gpus_per_node>=1";
  //   "world%gpus_per_node": with more than one node, every node is full
  //     (world = TP*DP*PP is a multiple of gpus_per_node);
  //   "tp-within-node": with more than one node, gpus_per_node % TP == 0 so
  //     no TP group straddles two nodes.
  static StatusOr<RankGrid> Create(int tp, int dp, int pp, int gpus_per_node);

  int tp() const { return tp_; }
  int dp() const { return dp_; }
  int pp() const { return pp_; }
  int gpus_per_node() const { return gpus_per_node_; }
  int world_size() const { return tp_ * dp_ * pp_; }
  int Stride(GroupKind kind) const { return RankStride(kind, tp_, 1, dp_); }
  int num_nodes() const { return (world_size() + gpus_per_node_ - 1) / gpus_per_node_; }

  // Preconditions for every function taking a rank: 0 <= rank < world_size()
  // (asserted), and coordinates within [0, TP) x [0, DP) x [0, PP).
  RankCoords Coords(int rank) const;
  int RankOf(RankCoords c) const;

  // Number of groups of a kind: TP groups = DP*PP, DP groups = TP*PP,
  // PP groups = TP*DP, model-parallel groups = DP.
  int NumGroups(GroupKind kind) const;
  int GroupSize(GroupKind kind) const;
  // The members of the group of `kind` that contains `rank`, in the order of
  // their rank inside the group's communicator.
  std::vector<int> GroupMembers(GroupKind kind, int rank) const;
  // Every group of `kind`, indexed by color.
  std::vector<std::vector<int>> AllGroups(GroupKind kind) const;
  SplitArgs SplitOf(GroupKind kind, int rank) const;

  bool IsFirstStage(int rank) const { return Coords(rank).pp == 0; }
  bool IsLastStage(int rank) const { return Coords(rank).pp == pp_ - 1; }
  // Neighbours in the pipeline (same tp, dp). Without wrap, the first stage
  // has no previous and the last no next (-1). With wrap (interleaved 1F1B,
  // where chunk c on the last stage feeds chunk c+1 on the first) they wrap
  // around the ring.
  int PipelinePrev(int rank, bool wrap = false) const;
  int PipelineNext(int rank, bool wrap = false) const;

  // Placement: ranks fill nodes in order, gpus_per_node each.
  int Node(int rank) const { return rank / gpus_per_node_; }
  int LocalRank(int rank) const { return rank % gpus_per_node_; }

  // "TP2 DP4 PP2 (16 ranks, 2 nodes of 8)".
  std::string ToString() const;

 private:
  RankGrid(int tp, int dp, int pp, int gpus_per_node)
      : tp_(tp), dp_(dp), pp_(pp), gpus_per_node_(gpus_per_node) {}
  int tp_, dp_, pp_, gpus_per_node_;
};

}  // namespace p3d
