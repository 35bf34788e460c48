// Estimate: what the simulator predicts for one plan. All memory figures are
// bytes on one GPU; all times are seconds per optimizer step. docs/metrics.md
// defines every figure.
#pragma once

#include <vector>

namespace p3d {

// Memory of one GPU. Every term is counted once; total() is their sum.
struct MemoryBreakdown {
  double weights = 0;      // working (bf16) weights resident on the GPU, incl. ZeRO-3 shards
  double gradients = 0;    // gradient accumulation buffers (sharded by ZeRO-2/3)
  double optimizer = 0;    // fp32 master weights + Adam moments (sharded by ZeRO-1/2/3)
  double activations = 0;  // stored activations of in-flight micro-batches, incl. logits/loss temporaries
  double buffers = 0;      // ZeRO-3 gather buffers, gradient-reduction buckets, PP send/recv buffers
  double runtime = 0;      // CUDA context, NCCL communicators, allocator reserve
  double total() const { return weights + gradients + optimizer + activations + buffers + runtime; }
};

struct StageMemory {
  int stage = 0;          // pipeline stage index (pp rank)
  int64_t layers = 0;     // transformer layers held by this stage (all its virtual chunks)
  MemoryBreakdown memory;
  double host_bytes = 0;  // CPU memory one GPU of this stage needs with offload (0 without)
};

struct MemoryEstimate {
  std::vector<StageMemory> stages;  // one per pipeline stage
  int peak_stage = 0;               // stage with the largest total: it decides fit
  // CPU memory of one node with offload (0 without): GPUs per node x the
  // largest per-GPU host figure; checked against NodeSpec::host_memory_bytes.
  double host_bytes_per_node = 0;
  MemoryBreakdown peak() const { return stages.empty() ? MemoryBreakdown{} : stages[peak_stage].memory; }
};

// Where the time of one step goes on the slowest pipeline rank. The parts
// (every field but step_s) sum to step_s exactly.
struct TimeBreakdown {
  double step_s = 0;
  double compute_s = 0;     // forward + backward (+ recompute) kernels, GEMM and memory-bound
  double tp_comm_s = 0;     // exposed tensor-parallel collectives
  double cp_comm_s = 0;     // exposed context-parallel K/V ring transfers
  double pp_comm_s = 0;     // exposed pipeline send/recv
  double dp_comm_s = 0;     // exposed data-parallel / ZeRO collectives
  double bubble_s = 0;      // pipeline idle time
  double optimizer_s = 0;   // optimizer step (+ gradient clipping); on the CPU with offload
  double offload_s = 0;     // exposed host<->GPU (PCIe/C2C) transfers of offload
  double other_s = 0;       // everything else (launch overheads, ...)
};

}  // namespace p3d

namespace p3d {

// One interval on one rank's timeline, for drawing predicted or measured
// pipeline timelines (SVG) and comparing them.
enum class TimelineKind { kForward, kBackward, kRecompute, kSendRecv, kTpComm, kDpComm, kOptimizer, kIdle };
struct TimelineEvent {
  int rank = 0;          // pipeline rank (row of the timeline)
  TimelineKind kind = TimelineKind::kForward;
  int microbatch = -1;   // -1 when not tied to a micro-batch
  int chunk = 0;         // virtual chunk
  double start_s = 0;
  double end_s = 0;
};

}  // namespace p3d
