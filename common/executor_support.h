// What p3d's own executor (p3d-run) can run today, as named rules over a Plan:
// the one list p3d-plan's `runs` column and --runnable, p3d-run's validation
// of its flags or saved plan, and the executor's model construction all
// consult (a plan p3d-plan marks runnable is one p3d-run accepts;
// tests/executor/runnable_test.cc checks it).
//
// Layout sanity (legal plans never break these; p3d-run's flags can):
//   dp>=1              at least one data-parallel rank
//   zero in 0..3       ZeRO stage 0, 1, 2 or 3
//   tp,pp,vpp>=1       parallel degrees of at least 1
//   vpp needs pp>1     interleaving needs a pipeline
// What the executor does not implement:
//   offload-params     parameter offload (ZeRO-Infinity): the executor offloads
//                      the optimizer (ZeRO-Offload) only
//   zero-with-tp/pp    ZeRO-2/3 with TP or PP > 1: sharded gradients with
//                      replicated-tensor norms are not implemented (ZeRO 0/1 are)
//   uneven-stages      a set first/last stage layer count: p3d-run splits the
//                      layers evenly over the PP x VPP model chunks
//   sp=>tp>1           sequence parallelism splits the residual stream over TP
#pragma once

#include <string>

#include "common/plan.h"
#include "common/status.h"

namespace p3d {

// nullptr when the executor runs `plan`; else the id of the first rule it
// breaks, with the message in *detail when detail is non-null. Cheap when
// detail is null (the search asks for every candidate).
const char* ExecutorUnsupported(const Plan& plan, std::string* detail = nullptr);

// OK, or InvalidArgument "rule <id>: <message>".
Status CheckExecutorSupports(const Plan& plan);

}  // namespace p3d
