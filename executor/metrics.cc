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

// Exact device names (as the driver reports them) and the catalog entry whose
// datasheet figures they have. Variants with other clocks or memory (H100 NVL,
// H200 NVL, A100 PCIe, ...) are deliberately absent: no guessed peak.
struct DeviceAlias {
  const char* device_name;
  const char* catalog_id;
};
constexpr DeviceAlias kDeviceAliases[] = {
    {"NVIDIA H100 80GB HBM3", "h100-sxm"},
    {"NVIDIA H100 PCIe", "h100-pcie"},
    {"NVIDIA H200", "h200"},
    {"NVIDIA A100-SXM4-80GB", "a100-80gb"},
    {"NVIDIA A100-SXM4-40GB", "a100-40gb"},
    {"NVIDIA B200", "b200"},
    {"NVIDIA L40S", "l40s"},
    {"NVIDIA GeForce RTX 4090", "rtx4090"},
    {"NVIDIA GeForce RTX 3090", "rtx3090"},
    {"Tesla V100-SXM2-32GB", "v100-32gb"},
    {"Tesla V100-SXM2-16GB", "v100-16gb"},
};

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

StatusOr<std::string> CatalogGpuForDevice(const std::string& device_name) {
  for (const auto& a : kDeviceAliases)
    if (device_name == a.device_name) return std::string(a.catalog_id);
  return Status::NotFound(fmt::format(
      "GPU '{}' is not in p3d's device table (executor/metrics.cc); its datasheet peak is "
      "unknown, so no MFU is reported",
      device_name));
}

}  // namespace p3d
