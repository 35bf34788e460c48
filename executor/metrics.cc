#include "executor/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace p3d {
namespace {

double Percentile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

StatusOr<StepTimeStats> SummarizeStepTimes(const std::vector<double>& times, int warmup) {
  if (warmup < 0) return Status::InvalidArgument("warm-up steps must be >= 0");
  if (static_cast<int>(times.size()) <= warmup)
    return Status::InvalidArgument(
        fmt::format("{} steps leave none to time after {} warm-up steps", times.size(), warmup));
  std::vector<double> t(times.begin() + warmup, times.end());
  std::sort(t.begin(), t.end());
  StepTimeStats s;
  s.count = static_cast<int>(t.size());
  s.median_s = Percentile(t, 0.5);
  s.min_s = t.front();
  s.max_s = t.back();
  s.p10_s = Percentile(t, 0.1);
  s.p90_s = Percentile(t, 0.9);
  double sum = 0;
  for (double x : t) sum += x;
  s.mean_s = sum / static_cast<double>(t.size());
  return s;
}

}  // namespace p3d
