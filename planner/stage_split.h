// The uneven pipeline split the search offers for a PP that does not divide
// the layers (Plan::first_stage_layers / last_stage_layers, Megatron's
// --decoder-first/last-pipeline-num-layers; rules: common/plan.h).
//
// A split is three stage sizes: F on stage 0, M on each of the PP-2 middle
// stages, Lc on stage PP-1 (at PP = 2 only F and Lc), each a positive
// multiple of VPP, F + (PP-2)*M + Lc = L. Every such split is one Megatron
// accepts. The balanced split is the one whose slowest stage is fastest:
//   minimise max(F + e, M, Lc + h)
// in units of one transformer layer's forward + backward kernel time, where
// e is the embedding's and h the final norm + LM head + cross-entropy's
// (StageEdgeWeights). Ties go to the fewest layers on stage 0 (it holds the
// most in-flight micro-batches, so that is the lower memory peak), then on
// the last stage. Worked example, Llama-3.1-405B (126 layers) on PP 16 with
// h ~ 0.7: M = 8 leaves 14 for F + Lc; (7, 7) has max(7 + e, 8, 7.7) = 8,
// while (8, 6) has 8 + e: the split is 7 | 8 x 14 | 7.
//
// The split is written with the fewest flags: a size equal to the middle
// stages' is left unset (0), and at PP = 2 only the first stage's is set.
#pragma once

#include <cstdint>
#include <optional>

#include "simulator/evaluated_plan.h"

namespace p3d {

// Kernel time of the pipeline's two ends, in layers (one transformer layer's
// forward + backward = 1), from the simulator's compute model at TP 1,
// micro-batch 1, no recompute, for the request's model, sequence and GPU.
struct StageEdgeWeights {
  double embedding = 0;  // e: embedding forward + backward, on stage 0
  double head = 0;       // h: final norm + LM head + loss forward + backward, on stage PP-1
};
StageEdgeWeights EdgeWeights(const PlanRequest& request, AttentionImpl attention);

struct StageSplit {
  int first = 0;  // Plan::first_stage_layers (0 = not set)
  int last = 0;   // Plan::last_stage_layers (0 = not set)
};

// The balanced split of `layers` over `pp` stages of `vpp` chunks, or nullopt
// when no split gives every chunk a layer. pp >= 2, vpp >= 1.
std::optional<StageSplit> BalancedStageSplit(int64_t layers, int pp, int vpp,
                                             const StageEdgeWeights& weights);

}  // namespace p3d
