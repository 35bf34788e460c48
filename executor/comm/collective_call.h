// One checked-pattern collective of simulator/collectives.h issued through a
// Communicator: the NCCL call of each op in one place, for p3d-calibrate's
// probe and p3d-comm-bench (float32, sum; send-recv sends to rank + 1 and
// receives from rank - 1).
#pragma once

#include <cuda_runtime.h>

#include "common/status.h"
#include "executor/comm/communicator.h"
#include "simulator/collectives.h"

namespace p3d {

// `send` holds k.send elements, `recv` k.recv (CountsOf).
Status IssueCollective(Communicator& c, Collective op, const CollectiveCounts& k, const float* send, float* recv,
                       cudaStream_t stream);

}  // namespace p3d
