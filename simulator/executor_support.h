// p3d-run's check of a plan against what p3d's executor runs: the p3d
// framework profile's rules (simulator/frameworks/p3d.json, gaps and limits;
// docs/frameworks.md). A light header for the executor's CUDA sources; the
// check lives in framework_profile.cc.
#pragma once

#include "common/plan.h"
#include "common/status.h"

namespace p3d {

// OK when p3d's executor runs `plan`, else InvalidArgument naming the rule:
// first the layout sanity p3d-run's flags can break (legal plans never do):
//   dp>=1, zero in 0..3, tp,cp,pp,vpp>=1, vpp needs pp>1, sp=>tp>1
// then the p3d profile's rules ("p3d: rule <id>: ...": offload-params,
// zero-with-tp/pp, uneven-stages, no-cp, no-hsdp, account-split, and no-tp-pp-dp:
// p3d builds the default rank order alone).
Status CheckExecutorSupports(const Plan& plan);

}  // namespace p3d
