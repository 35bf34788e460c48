// Trainer: the training loop behind p3d-run, one process per GPU. Builds the
// model from the options, initialises (or loads) it, runs the steps, measures
// them and optionally dumps the tensors the PyTorch reference check needs.
//
// Tensor / pipeline parallel: every TP / PP rank initialises its slices of the
// same full weights; the ranks of one model replica run the same micro-batches;
// with pp > 1 a step is one pipeline schedule over its grad_accum micro-batches.
//
// Data parallel (dp > 1, ProcessGroups given): every rank initialises the same
// full weights from the seed and keeps its ZeRO slices; DP rank d runs
// micro-batches d*grad_accum .. (d+1)*grad_accum - 1 of a global step of
// grad_accum*DP micro-batches, so DP = N trains on exactly the batches one GPU
// sees with grad_accum*N; the loss is the mean over the global batch.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/memory_plan.h"
#include "executor/metrics.h"
#include "executor/phase_timer.h"
#include "executor/train_options.h"

namespace p3d {

struct StepRecord {
  int64_t step = 0;
  double loss = 0;       // mean token loss of the step
  double grad_norm = 0;  // before clipping
  double seconds = 0;    // wall clock, synchronised
};

struct MemoryReport {
  int64_t arena_bytes = 0;                         // allocator peak: the one arena
  std::array<int64_t, kRegionTerms> term_bytes{};  // arena by RegionTerm
  std::vector<ArenaRegion> regions;
  int64_t device_used_peak_bytes = 0;  // max over steps of cudaMemGetInfo total - free
  int64_t device_total_bytes = 0;
  int64_t device_used_before_bytes = 0;  // used before the arena (context, other processes)
  int64_t host_pinned_bytes = 0;         // offloaded optimizer's pinned host memory (this rank)
};

// One rank's measurements (multi-rank runs; gathered to every rank).
struct RankReport {
  int rank = 0, tp = 0, dp = 0, pp = 0;
  double median_step_s = 0;  // this rank's own median step time after warm-up
  int64_t arena_bytes = 0, device_used_peak_bytes = 0;
};

struct TrainResult {
  std::string device_name;
  std::string catalog_gpu;  // empty when the card is unknown
  std::string mfu_note;     // why no MFU, when none
  double peak_flops = 0;    // datasheet dense bf16 FLOP/s (0 when unknown)
  std::string data;         // data source description
  int64_t first_step = 0;
  int64_t param_count = 0;
  std::vector<StepRecord> steps;      // loss: DP mean; seconds: the slowest rank's, per step
  std::optional<StepTimeStats> time;  // absent when too few steps were timed
  int world = 1;
  std::vector<RankReport> ranks;  // every rank (multi-rank runs), by rank
  int slowest_rank = 0;           // largest median step time
  int peak_memory_rank = 0;       // largest device-used peak
  double model_flops_per_step = 0;
  double tokens_per_s = 0, tflops_per_gpu = 0;
  std::optional<double> mfu;
  MemoryReport memory;
  std::optional<std::array<double, kPhases>> phase_seconds;  // of the profiled step
  double profiled_step_seconds = 0;
};

// on_step (optional) is called after every step, e.g. to print it.
StatusOr<TrainResult> Train(const TrainOptions& options,
                            const std::function<void(const StepRecord&)>& on_step);

}  // namespace p3d
