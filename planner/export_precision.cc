#include "planner/export_precision.h"

#include <fmt/format.h>

namespace p3d {

Status CheckExportPrecision(const Precision& p, const PrecisionLimits& limits) {
  if (p.param_bytes != 2 && p.param_bytes != 4) {
    return Status::Infeasible(fmt::format("{}: precision.param_bytes={}{}", limits.framework,
                                          p.param_bytes, limits.param));
  }
  if (p.grad_bytes != 2 && p.grad_bytes != 4) {
    return Status::Infeasible(
        fmt::format("{}: precision.grad_bytes={}{}", limits.framework, p.grad_bytes, limits.grad));
  }
  if (p.master_bytes != 4 || p.optimizer_bytes != 8) {
    return Status::Infeasible(fmt::format("{}: precision master_bytes={} optimizer_bytes={}{}",
                                          limits.framework, p.master_bytes, p.optimizer_bytes,
                                          limits.master));
  }
  return Status::Ok();
}

}  // namespace p3d
