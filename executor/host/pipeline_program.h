// PipelineProgram: one pipeline rank's step list of simulator/schedule.h
// (BuildSchedule) turned into what the executor dispatches: the compute steps
// in the list's order, and the list's send/recv steps posted as grouped NCCL
// calls (ncclGroupStart/End) between them.
//   - compute actions: forward / backward of (micro-batch, chunk), each with
//     the activation slot that holds that pair's stored activations from its
//     forward until its backward;
//   - comm actions: one grouped NCCL call each.
// Grouping (Megatron's batched p2p, schedules.py): the compute steps are cut
// into iterations; one comm action follows each iteration and holds the sends
// of its compute steps and the receives the NEXT iteration's compute steps
// wait for (the receives of the first iteration open the program):
//   - 1F1B, GPipe (vpp == 1) and interleaved without a steady phase (m == pp:
//     all forwards first): every compute step is an iteration, so a group is
//     the run of send/recv steps between two compute steps (Megatron's
//     send_forward_recv_backward / send_backward_recv_forward). In steady
//     1F1B, rank r sends the forward output of micro-batch i+1 while rank r+1
//     sends the input gradient of micro-batch i; as two separate blocking
//     calls each would wait for the other's receive.
//   - interleaved with a steady phase (m > pp): a forward directly followed by
//     a backward is ONE iteration, so the steady state is "forward, backward,
//     then one group {send output, send input gradient, receive next input,
//     receive next output gradient}" (send_forward_backward_recv_forward_
//     backward); warm-up forwards and cool-down backwards are iterations of
//     their own (send_forward_recv_forward / send_backward_recv_backward).
//     Grouping interleaved lists as for 1F1B deadlocks for m > pp (rank 0 posts
//     a lone send-backward while rank 1 waits for a gradient rank 0 sends
//     later). Example, pp=2 vpp=2 m=4, rank 1 (Fm.c: forward of micro-batch m
//     chunk c; S/R F/B: send/receive forward/backward):
//       [RF0.0] F0.0 [SF0.0 RF1.0] F1.0 [SF1.0 RF0.1] F0.1 B0.1 [SB0.1 RF1.1]
//       F1.1 B1.1 [SB1.1 RF2.0 RB0.0] F2.0 B0.0 [SF2.0 SB0.0 RF3.0 RB1.0] ...
// An iteration holds at most one backward, so one buffer each for the received
// output gradient and the sent input gradient suffices (pipeline_runner.h).
// CheckPipelinePrograms proves, for given programs, that the conservative
// execution model below never deadlocks and that the k-th send from rank a to
// rank b carries the tensor the k-th receive on b from a expects.
//
// Execution model (conservative): each rank runs its actions in order; a comm
// action completes when every one of its ops has met its counterpart, i.e.
// point-to-point messages between a pair of ranks in one direction are
// matched in FIFO order (NCCL's rule) and a send waits for the receive to be
// posted (no buffering). A real run only relaxes these waits.
//
// Activation slots: a slot is one chunk's worth of this rank's per-layer
// activation buffers (L / vpp layers and the chunk's output); every chunk of a
// rank has the same number of layers, so all chunks share one pool. A
// (micro-batch, chunk) pair takes the lowest free slot at the receive of its
// forward input, else at its forward, and frees it at its backward; `slots`
// is the peak number of pairs in flight: 1F1B min(m, PP - r); interleaved
// with m > PP Megatron's warm-up + 1 = (VPP-1)*PP + 2*(PP-r-1) + 1, and with
// m == PP (all forwards first) m*VPP. simulator/memory_model.h
// InFlightMicroBatches x VPP is the same count for 1F1B and interleaved with
// m > PP.
// The grouping moves no forward-input receive ahead of any compute step (only
// output-gradient receives move, ahead of a forward), so the peak is the
// list's own.
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
  int slots = 0;  // chunk-sized activation slots needed (>= 1), see above
  int vpp = 1;
};

// The list must pair each receive with the compute step right after it and
// each send with the compute step right before it (simulator/schedule.h's
// lists do). Errors: a step with chunk outside [0, vpp); a receive or send not
// next to its compute step; a backward without its forward; a pair forwarded
// twice; a send/recv whose pair has no live slot; slots left live at the end.
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

// Every rank's program of BuildSchedule(kind, pp, vpp, microbatches),
// compiled and checked (what p3d-run does before any rank starts, and each
// rank again for itself). Errors: BuildSchedule's rules (interleaved:
// "rule interleave-microbatches" where m % pp != 0), compile errors, and
// "rule pipeline schedule" with the check's message.
StatusOr<std::vector<PipelineProgram>> CompilePipeline(ScheduleKind kind, int pp, int vpp,
                                                       int64_t microbatches);

}  // namespace p3d
