// PhaseTimer: attributes the GPU time of a training step to phases by
// recording a CUDA event at each phase change on the stream. The time between
// two consecutive marks belongs to the phase named by the earlier mark, so the
// phases partition the span from the first to the last mark (launch gaps
// included in whichever phase was current). Used for the step breakdown of
// p3d-run; a null PhaseTimer* means "not profiling" and costs nothing.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <vector>

#include "common/status.h"

namespace p3d {

enum class Phase {
  kGemm,       // linear-layer and LM-head matrix multiplies (cuBLASLt)
  kAttention,  // QK^T and PV batched GEMMs, causal softmax, head layout, rotary
  kOther,      // norms, activations, residual adds, embedding, cross-entropy, reductions
  kOptimizer,  // gradient norm, clipping, AdamW
  kIdle,       // host-side work between GPU phases (data upload, host bucketing)
};
inline constexpr int kPhases = 5;
const char* PhaseName(Phase phase);  // "gemm", "attention", "other", "optimizer", "idle"

class PhaseTimer {
 public:
  explicit PhaseTimer(cudaStream_t stream) : stream_(stream) {}
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Records a mark when `phase` differs from the current one.
  Status Mark(Phase phase);
  // Records the final mark, waits for it and sums the intervals.
  Status Finish();
  double seconds(Phase phase) const { return seconds_[static_cast<int>(phase)]; }
  double total_seconds() const;

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
  std::vector<Phase> phases_;
  std::array<double, kPhases> seconds_{};
};

}  // namespace p3d
