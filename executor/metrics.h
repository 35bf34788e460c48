// Step metrics printed by p3d-run (docs/executor.md defines each one):
//   step time    median over the timed steps (after warm-up), with min, max,
//                10th/90th percentiles; wall clock from the start of the step's
//                first upload to the end of its optimizer update (synchronised)
//   tokens/s     global_batch * S / median step time
//   TFLOP/s/GPU  model FLOPs per step (models/flops.h ModelFlopsPerStep) / median / GPUs
//   MFU          TFLOP/s/GPU / the card's dense bf16 datasheet peak (simulator
//                catalog); reported only for cards the catalog knows
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "simulator/hardware.h"  // CatalogGpuForDevice: the catalog maps device names

namespace p3d {

struct StepTimeStats {
  int count = 0;
  double median_s = 0, min_s = 0, max_s = 0, p10_s = 0, p90_s = 0, mean_s = 0;
  // (p90 - p10) / median: the spread p3d-run prints.
  double spread() const { return median_s > 0 ? (p90_s - p10_s) / median_s : 0; }
};

// Statistics of times[warmup..]; error when no step is left after warm-up.
// Percentiles by linear interpolation between order statistics.
StatusOr<StepTimeStats> SummarizeStepTimes(const std::vector<double>& times, int warmup);

}  // namespace p3d
