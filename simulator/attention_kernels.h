// Speed of a framework's fused attention kernel relative to cuDNN's, the
// kernel p3d's executor runs and its fused-attention efficiencies describe
// (compute_model.cc). Published kernel benchmarks of several kernels on the
// same card (docs/time-model.md, "Attention kernels"): the ratio at the
// attention's sequence length, interpolated log-linearly, clamped at the ends.
#pragma once

#include "common/framework.h"
#include "simulator/hardware.h"

namespace p3d {

enum class AttentionPass { kForward, kBackward };

// Throughput of `kernel` / throughput of cuDNN on `gpu` for sequence length
// `seq`: 1 for cuDNN, and for a GPU without a published comparison (the
// prediction then assumes the kernels equal: docs/time-model.md says where
// this is weak).
double AttentionKernelSpeed(const GpuSpec& gpu, AttentionKernel kernel, double seq,
                            AttentionPass pass);

}  // namespace p3d
