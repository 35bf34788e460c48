// The "cpu_adam" object of a calibration (docs/calibration.md), written by
// p3d-calibrate's CPU AdamW probe (executor/calibrate/cpu_adam_probe.h):
//   {"params": N, "threads": T, "seconds_per_step": s, "params_per_s": N / s, ...}
// params_per_s is the CPU AdamW update rate of the whole node (all its
// hardware threads, as the offloaded step shares them among the node's GPUs):
// the figure NodeSpec::cpu_adam_params_per_s holds (docs/offload.md "Time").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace p3d {

// Validates `cpu_adam` and returns its params_per_s. `origin` names the file
// (or "p3d-calibrate") in messages, which name the field at fault, e.g.
// "profile p.json: field 'calibration.cpu_adam.params_per_s' must be a
// positive number, got -1". Rules: an object; params and threads positive
// integers; seconds_per_step and params_per_s positive finite numbers;
// params_per_s equal to params / seconds_per_step (to 1e-6). Other members
// (chunk_elements, steps, norm_seconds_per_step) are informational.
StatusOr<double> CalibratedCpuAdamParamsPerS(const nlohmann::json& cpu_adam,
                                             const std::string& origin);

}  // namespace p3d
