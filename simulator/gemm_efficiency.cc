#include <algorithm>
#include <cmath>

#include "simulator/hardware.h"

namespace p3d {

double GemmEfficiency(const GpuSpec& gpu, double flops) {
  const auto& t = gpu.gemm_efficiency;
  if (t.empty()) return 1.0;
  if (flops <= t.front().flops) return t.front().efficiency;
  if (flops >= t.back().flops) return t.back().efficiency;
  auto hi = std::lower_bound(t.begin(), t.end(), flops,
                             [](const GemmEfficiencyPoint& p, double f) { return p.flops < f; });
  auto lo = hi - 1;
  double x = (std::log(flops) - std::log(lo->flops)) / (std::log(hi->flops) - std::log(lo->flops));
  return lo->efficiency + x * (hi->efficiency - lo->efficiency);
}

}  // namespace p3d
