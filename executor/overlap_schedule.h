// OverlapSchedule: when the data-parallel communication of one training step
// runs against its compute (issue 14), as data. Pure logic, CPU-tested
// (tests/executor/overlap_schedule_test.cc); DataParallel
// (executor/data_parallel.h) executes it on its comm stream.
//
// Gradient buckets. A backward completes the parameter units of this rank
// (param_layout.h) in BackwardUnitOrder: the head unit (in the loss), layers
// L-1 .. 0, the embedding unit. A bucket is a run of consecutive units of that
// order, filled greedily up to `bucket_bytes` of fp32 gradients; a unit wider
// than that is a bucket alone. Units are never split: a unit's gradients are
// complete only when its whole backward has run, so its pieces would all be
// launched at the same moment anyway. Consecutive units of the backward order
// are neighbours in the flat buffers, so a bucket is one element range.
// A bucket is launched right after the backward of its last unit, the one that
// completes it: on the comm stream, after an event recorded on the compute
// stream there,
//   ZeRO-0/1  one in-place fp32 all-reduce of its range, in the step's last
//             micro-batch;
//   ZeRO-2/3  in every micro-batch, a reduce-scatter of each of its units (one
//             NCCL group; ZeRO ownership stays per unit, zero_layout.h), each
//             unit's reduced slice added to the gradient shard;
// and the optimizer step waits for every bucket. The default size is the p3d
// profile's bucket (kExecutorGradBucketElements, common/framework.h) of the
// executor's fp32 gradients, 100 MB (p3d-run --bucket-mb).
//
// Worked example, gpt-1.3b at 100 MB: every layer unit (50.4 M elements,
// 201 MB) is wider than a bucket, so the buckets are the units: {head unit
// (final norm)}, {layer 23}, ..., {layer 0}, {embedding}; 26 launches, the
// last after the embedding backward. tiny-gpt2-bytes (4 layers of 0.79 M
// elements, 3.2 MB each, embedding 1.3 MB) at 100 MB: one bucket of all six
// units, launched after the embedding backward; at 7 MB: {head, layer 3,
// layer 2}, {layer 1, layer 0}, {embedding}.
//
// ZeRO-3 gathers. A pass uses units in an order (forward: the embedding, layers
// 0 .. L-1, the head unit; backward: layers L-1 .. 0; the head's backward runs
// within its forward use, in the loss, and the embedding backward reads no
// weights). Before unit order[i] computes, the gathers issue[i] are issued on
// the comm stream: at i = 0 the unit itself and the next one, after that the
// unit after the one about to run (prefetch one ahead); the compute stream then
// waits for order[i]'s gather. With the gather ring (zero_layout.h) the
// prefetched unit lands in the slot of the unit used before order[i], whose
// compute is already enqueued.
#pragma once

#include <cstdint>
#include <vector>

#include "common/framework.h"
#include "common/status.h"
#include "executor/param_layout.h"
#include "simulator/memory_model.h"

namespace p3d {

// The p3d profile's bucket of the executor's fp32 gradients: 25 M x 4 bytes.
inline constexpr int64_t kDefaultGradBucketBytes =
    static_cast<int64_t>(kExecutorGradBucketElements) * static_cast<int64_t>(sizeof(float));

// This rank's units in the order a backward completes their gradients (units
// the stage does not hold are left out).
std::vector<int> BackwardUnitOrder(const ParamLayout& params);

struct GradBucket {
  std::vector<int> units;      // in backward order; units.back() completes the bucket
  int64_t begin = 0, end = 0;  // flat elements [begin, end): exactly its units
  int64_t size() const { return end - begin; }
};

struct GradBuckets {
  int64_t bucket_bytes = 0;
  std::vector<GradBucket> buckets;  // in launch order
  std::vector<int> unit_bucket;     // unit -> its bucket
};

// Errors: "rule bucket_bytes>0".
StatusOr<GradBuckets> BuildGradBuckets(const ParamLayout& params, int64_t bucket_bytes);

enum class Pass { kForward, kBackward };

struct GatherPass {
  std::vector<int> order;               // units in use order
  std::vector<std::vector<int>> issue;  // issue[i]: gathers issued before order[i] computes
};

GatherPass BuildGatherPass(const ParamLayout& params, Pass pass);

}  // namespace p3d
