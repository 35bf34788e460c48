// ZeroLayout: which elements of the flat parameter buffers (param_layout.h)
// this data-parallel rank owns under ZeRO, where their optimizer state lives,
// and the AdamW launches that cover them. Pure arithmetic, tested on CPU.
//
// ZeRO-0: the rank owns everything: one slice [0, total), stored at 0.
// ZeRO-1/2/3: every unit (a layer, the embedding unit, the head unit; each a
//   multiple of DP * kParamAlignElements elements, BuildParamLayout's
//   unit_align) is split into DP equal slices; DP rank d owns slice d of every
//   unit: [unit.begin + d * size/DP, unit.begin + (d+1) * size/DP). That is
//   exactly the block an in-place NCCL reduce-scatter of the unit leaves on
//   rank d, and the block rank d contributes to an in-place all-gather of it.
//   The owned slices are stored back to back ("local" offsets) in the fp32
//   master, Adam m and v (ZeRO >= 1) and the fp32 gradient shard (ZeRO >= 2).
//
// Worked example: units of 1024 and 512 elements, DP = 2, rank 1 owns
//   [512, 1024) at local 0 and [1280, 1536) at local 512; local_numel = 768.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "executor/memory_plan.h"
#include "executor/overlap_schedule.h"
#include "executor/param_layout.h"

namespace p3d {

struct OwnedSlice {
  int64_t begin = 0, end = 0;  // global elements [begin, end)
  int64_t local = 0;           // where begin sits in the rank's compact state
  int64_t size() const { return end - begin; }
};

// One AdamW launch: global [begin, end) (stored at `local`) with one decay flag.
struct AdamSegment {
  int64_t begin = 0, end = 0, local = 0;
  bool decay = false;
};

struct ZeroLayout {
  int zero = 0, dp = 1, dp_rank = 0;
  std::vector<OwnedSlice> slices;  // ZeRO-0: one; else one per unit (index = unit)
  int64_t local_numel = 0;         // elements of master / m / v (and the grad shard)
  std::vector<AdamSegment> segments;
};

// Errors: "rule zero in 0..3", "rule dp>=1", "rule dp_rank", and
// "rule unit%dp" when a unit is not a multiple of DP * kParamAlignElements
// (the layout was built without unit_align = DP * kParamAlignElements).
StatusOr<ZeroLayout> BuildZeroLayout(const ParamLayout& params, int zero, int dp, int dp_rank);

// UnitRing: per-unit working buffers for DP > 1 with ZeRO-2/3, so no
// full-size buffer exists. The units are taken in GROUPS of neighbouring units
// that use a buffer together (one unit each, or a gradient bucket), listed in
// backward order. One region holds, back to back:
//   buffers 0 and 1, the RING: slot_elements each. The groups that fit take
//     the two slots alternately in backward order (the k-th ring group uses
//     slot k % 2), so groups adjacent in a forward or a backward never share
//     a slot: a group's buffer was last used two groups earlier.
//   buffers 2.., DEDICATED, one per group, in unit order: a group larger than
//     a slot, and the group of the embedding unit when the head is tied to wte
//     (the embedding and the LM head use it at the two ends of the pass, with
//     the whole ring cycled in between).
// Inside its buffer a group's units sit as in the flat layout.
// Two rings are built from one layout:
//   GradStaging (BuildGradStaging), fp32, groups = the gradient buckets
//     (overlap_schedule.h): where each unit's gradients accumulate before they
//     are reduce-scattered into the shard (executor/data_parallel.h).
//     slot_elements = the largest bucket holding a layer unit and not the
//     tied embedding: at most max(bucket size, largest layer), since a bucket
//     of several units is no wider than the bucket size.
//     Invariant kept by DataParallel: a staging buffer is all zero while no
//     bucket accumulates in it (each reduction re-zeroes the bucket's range),
//     so a bucket can start accumulating in it without clearing it.
//   WeightGather (BuildWeightGather), bf16, ZeRO-3 only, groups = single
//     units: where each unit's weights are all-gathered before use (the bf16
//     weight region then holds only this rank's shard, ZeroLayout's local
//     offsets). slot_elements = the largest unit other than a tied embedding,
//     so only the tied embedding is dedicated (ring = 2 x max unit, + the
//     embedding when tied). With the prefetch of one unit ahead, the unit
//     being gathered takes the slot of the unit used just before the one in
//     use (DataParallel::BeforeUse).
//
// Worked example (gpt-1.3b, tied, DP 2, 100 MB buckets = the units): units
// embedding (wte PaddedVocab(V) x H + wpe 2048 x H = 107.2 M elements), 24
// layers of 50.4 M, head (final norm, 2 H). Both rings: slots 2 x 50.4 M; the
// head unit uses slot 0, layer 23 slot 1, layer 22 slot 0, ..., layer 0 slot
// 1; the embedding unit is dedicated (buffer 2, tied). 208 M elements: 0.78 GiB
// of fp32 gradient staging instead of a 1.31 G-element (4.9 GiB) gradient
// buffer, and 0.39 GiB of bf16 gather buffers next to a 1.23 GiB weight shard
// instead of 2.45 GiB of whole-model weights.
struct UnitRing {
  int64_t slot_elements = 0;
  std::vector<int> unit_buffer;       // unit -> buffer (0, 1 ring; >= 2 dedicated)
  std::vector<int64_t> buffer_begin;  // buffer -> its first element in the region
  std::vector<int64_t> unit_begin;    // unit -> ParamUnit::begin (the flat layout)
  std::vector<int64_t> unit_offset;   // unit -> its first element in the region
  int64_t total_elements = 0;         // the region's length
  bool staged() const { return !unit_buffer.empty(); }
  int buffers() const { return static_cast<int>(buffer_begin.size()); }
  // First element of unit `unit` in the region.
  int64_t UnitOffset(int unit) const { return unit_offset[unit]; }
  // Region element that holds flat element `elem` (0 <= elem < total).
  int64_t Offset(int64_t elem) const;
};
using GradStaging = UnitRing;

// The rings of `params` (every unit a multiple of kParamAlignElements
// elements, so each buffer starts 512-byte aligned in fp32, 256 in bf16).
GradStaging BuildGradStaging(const ParamLayout& params, const GradBuckets& buckets);
UnitRing BuildWeightGather(const ParamLayout& params);

// The ZeRO parameter-state buffers of one rank (Model::Create plans exactly these):
//   optimizer   master / m / v of the owned slices (local_numel), none with
//               the optimizer offloaded;
//   ZeRO-2/3, DP > 1: gradients reduced into an fp32 shard (local_numel), each
//               bucket accumulating in GradStaging instead of a whole-layout
//               buffer (at DP = 1 nothing is reduced and the whole-layout
//               buffer is the shard: every slice has local == begin);
//   ZeRO-3, DP > 1: the bf16 weights are the shard (local_numel), each unit
//               gathered before use into WeightGather.
struct ZeroBuffers {
  ParamStateSizes sizes;
  GradStaging staging;  // staged() iff ZeRO-2/3 at DP > 1
  UnitRing gather;      // staged() iff ZeRO-3 at DP > 1
};
ZeroBuffers BuildZeroBuffers(const ParamLayout& params, const ZeroLayout& zero,
                             const GradBuckets& buckets, bool offload_optimizer);

}  // namespace p3d
