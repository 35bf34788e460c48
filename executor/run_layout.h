// RunLayout: the parallel layout p3d-run executes, from flags (--dp --tp --pp
// --vpp --zero --sp) or from a saved plan (p3d-plan --save-plan; --plan runs
// exactly its model, micro-batch, grad-accum, sequence, recompute, logits
// chunk and layout). Pure logic, tested on CPU.
#pragma once

#include "common/status.h"
#include "executor/trainer.h"
#include "simulator/saved_plan.h"

namespace p3d {

struct RunLayout {
  int dp = 1, tp = 1, pp = 1, vpp = 1, zero = 0;
  bool sequence_parallel = false;
  int world() const { return dp * tp * pp; }
  // The layout as a Plan (other fields default), for the executor-support rules.
  Plan AsPlan() const {
    Plan p;
    p.dp = dp, p.tp = tp, p.pp = pp, p.vpp = vpp, p.zero = zero, p.sequence_parallel = sequence_parallel;
    return p;
  }
};

// Copies the saved plan's model, recipe, layout and offload into `options` /
// `layout`. Errors: parameter offload ("rule offload-params": the executor offloads
// the optimizer only).
Status ApplySavedPlan(const SavedPlan& saved, TrainOptions* options, RunLayout* layout);

// What this executor can run: any DP x TP x PP; ZeRO 0..3 with tp = pp = 1,
// ZeRO 0..1 otherwise ("rule zero-with-tp/pp", the p3d framework profile, simulator/framework_profile.h); vpp > 1 needs pp > 1;
// sequence parallelism needs tp > 1 ("rule sp=>tp>1"; the model refuses B*S
// not divisible by tp: "rule tokens % tp").
Status CheckSupportedLayout(const RunLayout& layout);

}  // namespace p3d
