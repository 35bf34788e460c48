#include "simulator/stage_kinds.h"

namespace p3d {

LayerKindCounts ChunkKinds(const ModelSpec& model, const Plan& plan, int v) {
  const int64_t count = ChunkLayers(plan, model.layers, v);
  if (!model.moe() && model.sliding_window == 0) {
    LayerKindCounts c;
    c.count[0] = count;  // every layer dense with full attention
    return c;
  }
  int64_t first = 0;
  for (int u = 0; u < v; ++u) first += ChunkLayers(plan, model.layers, u);
  return model.CountKinds(first, count);
}

LayerKindCounts StageKinds(const ModelSpec& model, const Plan& plan, int stage) {
  LayerKindCounts total;
  if (!model.moe() && model.sliding_window == 0) {  // ChunkKinds' one kind: the stage's layers
    total.count[0] = StageLayers(plan, model.layers, stage);
    return total;
  }
  for (int c = 0; c < plan.vpp; ++c) {
    const LayerKindCounts k = ChunkKinds(model, plan, c * plan.pp + stage);
    for (int i = 0; i < kLayerKinds; ++i) total.count[i] += k.count[i];
  }
  return total;
}

LayerKind MainKind(const ModelSpec& model) {
  const LayerKindCounts c = model.CountKinds(0, model.layers);
  int best = 0;
  for (int k = 1; k < kLayerKinds; ++k)
    if (c.count[k] >= c.count[best] && c.count[k] > 0) best = k;
  return LayerKind::FromIndex(best);
}

const char* KindName(const LayerKind& kind) {
  static const char* const kNames[kLayerKinds] = {"dense", "dense_windowed", "moe", "moe_windowed"};
  return kNames[kind.index()];
}

}  // namespace p3d
