#include "executor/zero_layout.h"

#include <fmt/format.h>

#include <algorithm>

namespace p3d {

StatusOr<ZeroLayout> BuildZeroLayout(const ParamLayout& p, int zero, int dp, int dp_rank) {
  if (zero < 0 || zero > 3)
    return Status::InvalidArgument(fmt::format("rule zero in 0..3: ZeRO stage {}", zero));
  if (dp < 1) return Status::InvalidArgument(fmt::format("rule dp>=1: dp = {}", dp));
  if (dp_rank < 0 || dp_rank >= dp)
    return Status::InvalidArgument(fmt::format("rule dp_rank: {} outside [0, {})", dp_rank, dp));
  ZeroLayout z;
  z.zero = zero;
  z.dp = dp;
  z.dp_rank = dp_rank;
  if (zero == 0) {
    z.slices.push_back({0, p.total, 0});
  } else {
    for (const ParamUnit& u : p.units) {
      if (u.size() % (dp * kParamAlignElements) != 0)
        return Status::InvalidArgument(fmt::format(
            "rule unit%dp: a unit of {} elements does not split into {} slices of whole {}-element "
            "blocks (build the layout with unit_align = dp * {})",
            u.size(), dp, kParamAlignElements, kParamAlignElements));
      const int64_t len = u.size() / dp;
      z.slices.push_back({u.begin + dp_rank * len, u.begin + (dp_rank + 1) * len, z.local_numel});
      z.local_numel += len;
    }
  }
  if (zero == 0) z.local_numel = p.total;
  // Decay runs cover the buffer: run k starts at its first tensor and ends
  // where the next run starts (gaps are zero in every buffer and stay zero).
  struct Run {
    int64_t begin, end;
    bool decay;
  };
  std::vector<Run> runs;
  for (const ParamTensor& t : p.tensors) {
    if (!runs.empty() && runs.back().decay == t.decay) continue;
    if (!runs.empty()) runs.back().end = t.offset;
    runs.push_back({t.offset, p.total, t.decay});
  }
  for (const OwnedSlice& s : z.slices) {
    for (const Run& r : runs) {
      const int64_t b = std::max(s.begin, r.begin), e = std::min(s.end, r.end);
      if (b < e) z.segments.push_back({b, e, s.local + (b - s.begin), r.decay});
    }
  }
  return z;
}

}  // namespace p3d
