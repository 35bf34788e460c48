#include "planner/stage_split.h"

#include <algorithm>
#include <cmath>

#include "simulator/compute_model.h"
#include "simulator/stage_kinds.h"

namespace p3d {

StageEdgeWeights EdgeWeights(const PlanRequest& request, AttentionImpl attention) {
  const ComputeShape shape{.tp = 1,
                           .micro_batch = 1,
                           .recompute = Recompute::kNone,
                           .sequence_parallel = false,
                           .attention = attention};
  // In units of the model's main layer kind (an MoE layer for DeepSeek; its
  // lighter leading dense layers are not weighed apart).
  const LayerKernelTimes layer = LayerKernels(request.model, MainKind(request.model), request.training,
                                              request.cluster.gpu, shape);
  const EdgeKernelTimes edge =
      EdgeKernels(request.model, request.training, request.cluster.gpu, shape);
  const double unit = layer.forward.total() + layer.backward.total();
  if (!(unit > 0)) return {};
  return {(edge.embedding_forward.total() + edge.embedding_backward.total()) / unit,
          (edge.head_forward.total() + edge.head_backward.total()) / unit};
}

std::optional<StageSplit> BalancedStageSplit(int64_t layers, int pp, int vpp,
                                             const StageEdgeWeights& w) {
  if (pp < 2 || vpp < 1 || layers % vpp != 0) return std::nullopt;
  // Sizes in units of VPP layers (every stage holds a whole number of them).
  const int64_t units = layers / vpp;
  const double v = vpp;
  const int64_t middle_stages = pp - 2;
  struct Best {
    double cost;
    int64_t first, middle, last;
  };
  std::optional<Best> best;
  auto consider = [&](int64_t f, int64_t m, int64_t l) {
    if (f < 1 || l < 1) return;
    const double cost = std::max({f * v + w.embedding, m * v, l * v + w.head});
    if (!best || cost < best->cost ||
        (cost == best->cost && (f < best->first || (f == best->first && l < best->last))))
      best = Best{cost, f, m, l};
  };
  if (middle_stages == 0) {
    for (int64_t f = 1; f < units; ++f) consider(f, 0, units - f);
  } else {
    for (int64_t m = 1; middle_stages * m + 2 <= units; ++m) {
      const int64_t rest = units - middle_stages * m;  // f + l
      // g(f) = max(f*v + e, (rest-f)*v + h) falls with f until its two sides
      // meet near `bottom`, and rises after. With the middle stages' m*v as a
      // floor, the best cost is max(m*v, min g), and its smallest f is the
      // first f whose falling side is within it (`reach`), or the bottom of g.
      // Both come from floating point, so their integer neighbours are tried.
      auto g = [&](int64_t f) { return std::max(f * v + w.embedding, (rest - f) * v + w.head); };
      auto clamp = [&](double f) {
        return static_cast<int64_t>(std::clamp(f, 1.0, static_cast<double>(rest - 1)));
      };
      const int64_t bottom = clamp(std::floor((rest * v + w.head - w.embedding) / (2 * v)));
      const double target = std::max(m * v, std::min(g(bottom), g(std::min(bottom + 1, rest - 1))));
      const int64_t reach = clamp(std::ceil(rest - (target - w.head) / v));
      for (int64_t centre : {bottom, reach})
        for (int64_t f = centre - 1; f <= centre + 1; ++f)
          if (f < rest) consider(f, m, rest - f);
    }
  }
  if (!best) return std::nullopt;
  const int64_t first = best->first * vpp, last = best->last * vpp, middle = best->middle * vpp;
  StageSplit split;
  if (middle_stages == 0) {
    split.first = first != last ? static_cast<int>(first) : 0;
  } else {
    split.first = first != middle ? static_cast<int>(first) : 0;
    split.last = last != middle ? static_cast<int>(last) : 0;
  }
  return split;
}

}  // namespace p3d
