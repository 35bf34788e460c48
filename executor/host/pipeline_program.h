// PipelineProgram: one pipeline rank's step list of simulator/schedule.h
// (BuildSchedule) turned into what the executor dispatches, in the same order:
//   - compute actions: forward / backward of (micro-batch, chunk), each with
//     the activation slot that holds that pair's stored activations from its
//     forward until its backward;
//   - comm actions: every run of consecutive send/recv steps between two
//     compute steps, posted as ONE grouped NCCL call (ncclGroupStart/End).
// Grouping is what makes the lists deadlock-free: in steady 1F1B, rank r sends
// the forward output of micro-batch i+1 while rank r+1 sends the input
// gradient of micro-batch i; as two separate blocking calls each would wait
// for the other's receive (Megatron groups send_forward_recv_backward for the
// same reason). CheckPipelinePrograms proves, for given programs, that the
// conservative execution model below never deadlocks and that the k-th send
// from rank a to rank b carries the tensor the k-th receive on b from a
// expects.
//
// Execution model (conservative): each rank runs its actions in order; a comm
// action completes when every one of its ops has met its counterpart, i.e.
// point-to-point messages between a pair of ranks in one direction are
// matched in FIFO order (NCCL's rule) and a send waits for the receive to be
// posted (no buffering). A real run only relaxes these waits.
//
// Activation slots: a slot is a full set of this rank's per-layer activation
// buffers; chunk c uses the layers of chunk c in it, so slots are assigned per
// chunk (lowest free slot at the forward, freed at the backward) and `slots`
// is the peak number of micro-batches of one chunk in flight (1F1B: PP - r).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "simulator/schedule.h"

namespace p3d {

struct PipeAction {
  enum class Kind { kForward, kBackward, kComm };
  Kind kind = Kind::kForward;
  int microbatch = -1, chunk = -1, slot = -1;  // compute actions
  std::vector<PipeStep> comm;                  // kComm: the grouped send/recv steps
  std::vector<int> comm_slot;                  // slot of each comm step's (mb, chunk)
};

struct PipelineProgram {
  std::vector<PipeAction> actions;
  int slots = 0;  // activation slots needed (>= 1)
  int vpp = 1;
};

// Errors: a step with chunk outside [0, vpp); a backward without its forward;
// a pair forwarded twice; a send/recv whose pair has no live slot; slots left
// live at the end.
StatusOr<PipelineProgram> CompilePipelineProgram(const std::vector<PipeStep>& steps, int vpp);

// Model chunk (virtual stage) of chunk c on pipeline rank r: c * pp + r.
inline int ModelChunk(int pp, int rank, int chunk) { return chunk * pp + rank; }

// Checks a whole pipeline (programs[r] of rank r; pp = programs.size()) under
// the execution model above: no deadlock, every message matched in FIFO order
// with the (micro-batch, model chunk) its receiver expects, every forward of
// model chunk k > 0 preceded by the receive of its input, every backward of
// k < last preceded by the receive of its output gradient. Errors name the
// first stuck rank and action, or the mismatching message.
Status CheckPipelinePrograms(const std::vector<PipelineProgram>& programs);

}  // namespace p3d
