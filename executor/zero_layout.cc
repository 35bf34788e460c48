#include "executor/zero_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

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

// Neighbouring units that share a buffer: their flat range.
struct UnitGroup {
  std::vector<int> units;
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool Holds(const std::function<bool(int)>& pred) const {
    return std::any_of(units.begin(), units.end(), pred);
  }
};

// groups: in backward order (the ring's order).
UnitRing BuildUnitRing(const ParamLayout& p, const std::vector<UnitGroup>& groups,
                       int64_t slot_elements) {
  UnitRing st;
  st.slot_elements = slot_elements;
  const int units = static_cast<int>(p.units.size());
  for (const ParamUnit& u : p.units) st.unit_begin.push_back(u.begin);
  st.unit_buffer.assign(units, -1);
  st.unit_offset.assign(units, 0);
  st.buffer_begin = {0, slot_elements};
  st.total_elements = 2 * slot_elements;
  std::vector<int> group_buffer(groups.size(), -1);
  auto dedicated = [&](const UnitGroup& g) {
    return g.size() > slot_elements || g.Holds([&](int u) { return TiedEmbedding(p, u); });
  };
  std::vector<size_t> by_begin(groups.size());  // dedicated buffers in unit order
  for (size_t i = 0; i < groups.size(); ++i) by_begin[i] = i;
  std::sort(by_begin.begin(), by_begin.end(),
            [&](size_t a, size_t b) { return groups[a].begin < groups[b].begin; });
  for (size_t i : by_begin) {
    if (!dedicated(groups[i])) continue;
    group_buffer[i] = st.buffers();
    st.buffer_begin.push_back(st.total_elements);
    st.total_elements += groups[i].size();
  }
  int k = 0;  // position among the ring groups in backward order
  for (size_t i = 0; i < groups.size(); ++i)
    if (group_buffer[i] < 0) group_buffer[i] = k++ % 2;
  for (size_t i = 0; i < groups.size(); ++i)
    for (int u : groups[i].units) {
      st.unit_buffer[u] = group_buffer[i];
      st.unit_offset[u] = st.buffer_begin[group_buffer[i]] + (p.units[u].begin - groups[i].begin);
    }
  return st;
}

}  // namespace

GradStaging BuildGradStaging(const ParamLayout& p, const GradBuckets& buckets) {
  std::vector<UnitGroup> groups;
  int64_t slot = 0;
  for (const GradBucket& b : buckets.buckets) {
    groups.push_back({b.units, b.begin, b.end});
    const UnitGroup& g = groups.back();
    if (g.Holds([&](int u) { return p.units[u].kind == UnitKind::kLayer; }) &&
        !g.Holds([&](int u) { return TiedEmbedding(p, u); }))
      slot = std::max(slot, b.size());
  }
  return BuildUnitRing(p, groups, slot);
}

UnitRing BuildWeightGather(const ParamLayout& p) {
  std::vector<UnitGroup> groups;
  int64_t slot = 0;
  for (int u : BackwardUnitOrder(p)) {
    groups.push_back({{u}, p.units[u].begin, p.units[u].end});
    if (!TiedEmbedding(p, u)) slot = std::max(slot, p.units[u].size());
  }
  return BuildUnitRing(p, groups, slot);
}

int64_t UnitRing::Offset(int64_t elem) const {
  const auto next = std::upper_bound(unit_begin.begin(), unit_begin.end(), elem);
  const int unit = static_cast<int>(next - unit_begin.begin()) - 1;
  return UnitOffset(unit) + (elem - unit_begin[unit]);
}

ZeroBuffers BuildZeroBuffers(const ParamLayout& params, const ZeroLayout& zero,
                             const GradBuckets& buckets, bool offload_optimizer) {
  ZeroBuffers b;
  b.sizes.optimizer_elements = offload_optimizer ? 0 : zero.local_numel;
  if (zero.dp > 1 && zero.zero >= 2) {
    b.staging = BuildGradStaging(params, buckets);
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
