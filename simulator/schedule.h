// Pipeline schedules as data: per-pipeline-rank lists of steps for one
// optimizer step. The simulator times these lists (simulator/pipeline_sim.h);
// the executor dispatches the very same lists (executor/), so a predicted and
// a measured timeline can be drawn side by side.
//
// Conventions: pipeline rank r in [0, PP) holds virtual chunks c in [0, VPP);
// model chunk (global virtual stage) of (r, c) is  c * PP + r  (Megatron's
// interleaving), so layers are split into PP*VPP contiguous chunks. With
// VPP == 1 this is plain 1F1B. Micro-batches are numbered 0..m-1 per DP rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace p3d {

enum class ScheduleKind { kGPipe, k1F1B, kInterleaved1F1B };
const char* ScheduleName(ScheduleKind kind);  // "gpipe" | "1f1b" | "interleaved-1f1b"

enum class StepKind {
  kForward,         // run forward of (microbatch, chunk) on this rank
  kBackward,        // run backward of (microbatch, chunk)
  kSendForward,     // send output activation of (microbatch, chunk) to peer
  kRecvForward,     // receive input activation of (microbatch, chunk) from peer
  kSendBackward,    // send input-gradient of (microbatch, chunk) to peer
  kRecvBackward,    // receive output-gradient of (microbatch, chunk) from peer
};
const char* StepKindName(StepKind kind);

struct PipeStep {
  StepKind kind = StepKind::kForward;
  int microbatch = 0;
  int chunk = 0;   // virtual chunk index on this rank, [0, VPP)
  int peer = -1;   // pipeline rank of the other side for send/recv steps, else -1
};

// Per-rank step lists; schedule[r] is the program of pipeline rank r.
using PipeSchedule = std::vector<std::vector<PipeStep>>;

// Builds the schedule. Errors (naming the rule): pp < 1, vpp < 1, m < 1;
// interleaved needs vpp > 1 and m % pp == 0 (Megatron's constraint).
StatusOr<PipeSchedule> BuildSchedule(ScheduleKind kind, int pp, int vpp, int64_t microbatches);

// Forwards pipeline rank `rank` runs before its first backward: the warm-up
// of the 1F1B schedules (all of its forwards under GPipe). A rank out of
// range has none.
int64_t WarmupForwards(const PipeSchedule& schedule, int rank);

}  // namespace p3d
