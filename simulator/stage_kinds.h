// Which layer kinds (models/model_spec.h LayerKind: dense or MoE FFN, full or
// windowed attention) each pipeline rank and each virtual stage holds.
//
// Layers are placed in order: virtual stage v = c*PP + r (chunk c of rank r)
// holds ChunkLayers(v) (common/plan.h) consecutive layers after those of the
// virtual stages before it, as Megatron-Core assigns them. Counts are exact: DeepSeek-V3
// on PP=8 with 8 layers on stage 0 puts its 3 dense layers and 5 MoE layers there.
//
// Preconditions: the plan's pipeline split is legal (PipelineSplitRule).
#pragma once

#include "common/plan.h"
#include "models/model_spec.h"

namespace p3d {

// Layers of each kind in virtual stage v (0 <= v < PP*VPP).
LayerKindCounts ChunkKinds(const ModelSpec& model, const Plan& plan, int v);
// Layers of each kind on pipeline rank `stage`: all its VPP chunks.
LayerKindCounts StageKinds(const ModelSpec& model, const Plan& plan, int stage);

// The kind most of the model's layers have (ties: the higher index, MoE
// first): what --explain shows as "layer.*" and what the per-layer TP overlap
// and overlap-slowdown mix use.
LayerKind MainKind(const ModelSpec& model);
// "dense", "moe", "dense_windowed", "moe_windowed": the --explain name of a kind.
const char* KindName(const LayerKind& kind);

}  // namespace p3d
