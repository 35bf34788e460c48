// Checkpoints: everything needed to continue training bit-identically.
//
// File layout: the 8 bytes "P3DCKPT1", a little-endian uint64 header length,
// the JSON header, then four raw little-endian buffers of ParamLayout::total
// elements each: bf16 weights, fp32 master weights, fp32 Adam m, fp32 Adam v.
// Header: {"model": ModelToJson(spec), "param_elements": total, "step": next
// step to run, "seed": init seed, "adam_steps": optimizer steps taken}.
// Gradients are not saved (they are zero at a step boundary); data sources are
// stateless in the step (executor/data.h), so the step number is the data position.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "executor/model.h"

namespace p3d {

struct CheckpointInfo {
  int64_t step = 0;        // next step to run
  int64_t adam_steps = 0;  // optimizer steps taken so far (AdamW's t)
  uint64_t seed = 0;
};

Status SaveCheckpoint(const std::string& path, const Model& model, const CheckpointInfo& info);

// Loads into `model`. Errors name the file and the mismatch: not a p3d
// checkpoint, a different model shape, a different parameter layout, truncation.
StatusOr<CheckpointInfo> LoadCheckpoint(const std::string& path, Model& model);

}  // namespace p3d
