// The precision recipes the exported frameworks (DeepSpeed, Megatron) can
// express: bf16 (2) or fp32 (4) working weights and gradient accumulation,
// fp32 master weights and Adam moments (4 + 8 bytes).
#pragma once

#include "common/plan.h"
#include "common/status.h"

namespace p3d {

// What one framework has instead of a recipe it cannot express: each text
// follows the offending value in the message, e.g. framework "megatron" and
// param " has no Megatron mode (--bf16 = 2, fp32 = 4)" give
// "megatron: precision.param_bytes=8 has no Megatron mode (--bf16 = 2, fp32 = 4)".
struct PrecisionLimits {
  const char* framework;
  const char* param;   // after "precision.param_bytes=N"
  const char* grad;    // after "precision.grad_bytes=N"
  const char* master;  // after "precision master_bytes=N optimizer_bytes=M"
};

// Ok, or Infeasible naming the first field `precision` sets that the
// framework cannot express.
Status CheckExportPrecision(const Precision& precision, const PrecisionLimits& limits);

}  // namespace p3d
