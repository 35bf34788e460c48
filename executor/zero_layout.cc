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

namespace {

bool TiedEmbedding(const ParamLayout& p, int unit) {
  return p.head >= 0 && p.head == p.wte && unit == p.embedding_unit;
}

UnitRing BuildUnitRing(const ParamLayout& p, int64_t slot_elements) {
  UnitRing st;
  st.slot_elements = slot_elements;
  const int units = static_cast<int>(p.units.size());
  for (const ParamUnit& u : p.units) st.unit_begin.push_back(u.begin);
  st.unit_buffer.assign(units, -1);
  st.buffer_begin = {0, slot_elements};
  st.total_elements = 2 * slot_elements;
  for (int u = 0; u < units; ++u) {
    if (p.units[u].size() <= slot_elements && !TiedEmbedding(p, u)) continue;
    st.unit_buffer[u] = st.buffers();
    st.buffer_begin.push_back(st.total_elements);
    st.total_elements += p.units[u].size();
  }
  int k = 0;  // position among the ring units, counted from the last unit
  for (int u = units - 1; u >= 0; --u)
    if (st.unit_buffer[u] < 0) st.unit_buffer[u] = k++ % 2;
  return st;
}

}  // namespace

GradStaging BuildGradStaging(const ParamLayout& p) {
  int64_t slot = 0;
  for (const ParamUnit& u : p.units)
    if (u.kind == UnitKind::kLayer) slot = std::max(slot, u.size());
  return BuildUnitRing(p, slot);
}

UnitRing BuildWeightGather(const ParamLayout& p) {
  int64_t slot = 0;
  for (int u = 0; u < static_cast<int>(p.units.size()); ++u)
    if (!TiedEmbedding(p, u)) slot = std::max(slot, p.units[u].size());
  return BuildUnitRing(p, slot);
}

int64_t UnitRing::Offset(int64_t elem) const {
  const auto next = std::upper_bound(unit_begin.begin(), unit_begin.end(), elem);
  const int unit = static_cast<int>(next - unit_begin.begin()) - 1;
  return UnitOffset(unit) + (elem - unit_begin[unit]);
}

ZeroBuffers BuildZeroBuffers(const ParamLayout& params, const ZeroLayout& zero,
                             bool offload_optimizer) {
  ZeroBuffers b;
  b.sizes.optimizer_elements = offload_optimizer ? 0 : zero.local_numel;
  if (zero.dp > 1 && zero.zero >= 2) {
    b.staging = BuildGradStaging(params);
    b.sizes.grad_shard_elements = zero.local_numel;
    b.sizes.grad_staging_elements = b.staging.total_elements;
  }
  if (zero.dp > 1 && zero.zero == 3) {
    b.gather = BuildWeightGather(params);
    b.sizes.weight_elements = zero.local_numel;
    b.sizes.gather_elements = b.gather.total_elements;
  }
  return b;
}

}  // namespace p3d
