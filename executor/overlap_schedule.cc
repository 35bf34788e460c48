#include "executor/overlap_schedule.h"

#include <fmt/format.h>

namespace p3d {

std::vector<int> BackwardUnitOrder(const ParamLayout& p) {
  std::vector<int> order;
  if (p.head_unit >= 0) order.push_back(p.head_unit);
  for (int64_t l = static_cast<int64_t>(p.layers.size()) - 1; l >= 0; --l)
    order.push_back(p.LayerUnit(l));
  if (p.embedding_unit >= 0) order.push_back(p.embedding_unit);
  return order;
}

StatusOr<GradBuckets> BuildGradBuckets(const ParamLayout& p, int64_t bucket_bytes) {
  if (bucket_bytes < 1)
    return Status::InvalidArgument(
        fmt::format("rule bucket_bytes>0: a gradient bucket of {} bytes", bucket_bytes));
  GradBuckets b;
  b.bucket_bytes = bucket_bytes;
  b.unit_bucket.assign(p.units.size(), -1);
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / sizeof(float));
  for (int unit : BackwardUnitOrder(p)) {
    const ParamUnit& u = p.units[unit];
    if (b.buckets.empty() || b.buckets.back().size() + u.size() > bucket_elements)
      b.buckets.push_back({{}, u.begin, u.end});
    GradBucket& g = b.buckets.back();
    g.units.push_back(unit);
    g.begin = u.begin;  // units arrive in descending flat order
    b.unit_bucket[unit] = static_cast<int>(b.buckets.size()) - 1;
  }
  return b;
}

GatherPass BuildGatherPass(const ParamLayout& p, Pass pass) {
  GatherPass g;
  if (pass == Pass::kForward) {
    if (p.embedding_unit >= 0) g.order.push_back(p.embedding_unit);
    for (int64_t l = 0; l < static_cast<int64_t>(p.layers.size()); ++l)
      g.order.push_back(p.LayerUnit(l));
    if (p.head_unit >= 0) g.order.push_back(p.head_unit);
  } else {
    for (int64_t l = static_cast<int64_t>(p.layers.size()) - 1; l >= 0; --l)
      g.order.push_back(p.LayerUnit(l));
  }
  g.issue.resize(g.order.size());
  for (size_t i = 0; i < g.order.size(); ++i) {
    if (i == 0) g.issue[i].push_back(g.order[i]);
    if (i + 1 < g.order.size()) g.issue[i].push_back(g.order[i + 1]);
  }
  return g;
}

}  // namespace p3d
