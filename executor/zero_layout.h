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

}  // namespace p3d
