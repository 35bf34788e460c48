// CPU AdamW probe for p3d-calibrate (docs/calibration.md "cpu_adam" object):
// how many parameters per second this host's CPU steps in an offloaded
// optimizer step (docs/offload.md), the figure the time model takes as
// NodeSpec::cpu_adam_params_per_s (simulator/profile_cpu_adam.h reads it).
//
// Host-only (no CUDA): runs the executor's own CPU AdamW path
// (executor/host/cpu_adam.h) the way HostOptimizer runs it: one CpuThreadPool
// of `threads`, the update called once per kOffloadChunkElements chunk. Each
// step is also preceded by the gradient-norm pass (CpuSquaredSum), timed
// apart: the executor takes its clip scale from the GPU, so the rate the
// time model needs is the update's alone.
//
// Arrays: fp32 gradients, master, m, v and bf16 weights of `params` elements
// (18 bytes each), plain host memory allocated and first touched on the
// calling thread, as HostOptimizer's pinned buffers are. Step 1 is a warm-up
// whose results are checked: every array at a few indices against a scalar
// restatement of the update (the GPU kernel's formula), to 4 fp32 ulps
// (cpu_adam.h matches it bit for bit unless a compiler contracts it
// differently). Then timed steps until max_seconds have passed since the
// start (at least 1, at most 10).
//
// Returns {"params", "threads", "chunk_elements", "steps" (timed),
// "seconds_per_step" (median update time of one step), "params_per_s"
// (params / seconds_per_step), "norm_seconds_per_step" (median norm pass)}.
// Errors: params < 1, threads < 0, max_seconds <= 0 (InvalidArgument naming
// the argument); the arrays cannot be allocated (Infeasible, with the bytes);
// a checked value differs (Internal, naming the array, index and values).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "common/status.h"

namespace p3d {

StatusOr<nlohmann::json> ProbeCpuAdam(int64_t params, int threads, double max_seconds);

}  // namespace p3d
