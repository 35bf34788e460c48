// GEMM efficiency: interpolation (GemmEfficiency, AttentionEfficiency) and the
// catalog's default tables (DefaultGemmEfficiency). docs/time-model.md explains the tables.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "simulator/hardware.h"

namespace p3d {

namespace {

// Log-linear interpolation in x over a table sorted by x, clamped at the ends.
double Interpolate(const std::vector<GemmEfficiencyPoint>& t, double x) {
  if (x <= t.front().flops) return t.front().efficiency;
  if (x >= t.back().flops) return t.back().efficiency;
  auto hi = std::lower_bound(t.begin(), t.end(), x,
                             [](const GemmEfficiencyPoint& p, double f) { return p.flops < f; });
  auto lo = hi - 1;
  double w = (std::log(x) - std::log(lo->flops)) / (std::log(hi->flops) - std::log(lo->flops));
  return lo->efficiency + w * (hi->efficiency - lo->efficiency);
}

}  // namespace

double GemmEfficiency(const GpuSpec& gpu, double flops) {
  if (gpu.gemm_efficiency.empty()) return 1.0;
  return Interpolate(gpu.gemm_efficiency, flops);
}

double Fp8GemmEfficiency(const GpuSpec& gpu, double flops) {
  if (gpu.fp8_gemm_efficiency.empty()) return 1.0;
  return Interpolate(gpu.fp8_gemm_efficiency, flops);
}

// The table's `flops` field holds bytes here.
double HbmEfficiency(const GpuSpec& gpu, double bytes) {
  if (gpu.hbm_efficiency_by_bytes.empty()) return gpu.hbm_efficiency;
  return Interpolate(gpu.hbm_efficiency_by_bytes, bytes);
}

bool MeasuredGemm(const GpuSpec& gpu, double m, double n, double k, GemmShapeTime* out) {
  for (const GemmShapeTime& g : gpu.gemm_shapes) {
    if (g.m != m || g.k != k || std::fabs(n - g.n) > 0.01 * g.n) continue;
    const double r = n / g.n;
    *out = {m, n, k, g.fwd_s * r, g.dx_s * r, g.dw_s * r};
    return true;
  }
  return false;
}

bool AttentionEfficiency(const GpuSpec& gpu, double head_dim, double seq, double flops,
                         AttentionEfficiencyPoint* out) {
  std::vector<AttentionEfficiencyPoint> t;
  for (const AttentionEfficiencyPoint& p : gpu.attention_efficiency)
    if (p.head_dim == head_dim && p.seq == seq) t.push_back(p);
  if (t.empty())
    for (const AttentionEfficiencyPoint& p : gpu.attention_efficiency)
      if (p.head_dim == head_dim) t.push_back(p);
  if (t.empty()) return false;
  std::sort(t.begin(), t.end(), [](const auto& a, const auto& b) { return a.flops < b.flops; });
  if (flops <= t.front().flops) return *out = t.front(), true;
  if (flops >= t.back().flops) return *out = t.back(), true;
  auto hi = std::lower_bound(t.begin(), t.end(), flops,
                             [](const AttentionEfficiencyPoint& p, double f) { return p.flops < f; });
  auto lo = hi - 1;
  const double x =
      (std::log(flops) - std::log(lo->flops)) / (std::log(hi->flops) - std::log(lo->flops));
  auto mix = [x](double a, double b) { return a + x * (b - a); };
  *out = {head_dim, seq, flops, mix(lo->forward, hi->forward), mix(lo->probs, hi->probs),
          mix(lo->backward, hi->backward)};
  return true;
}

namespace {

// Default tables: {FLOPs of one GEMM (2*M*N*K), achieved / dense bf16 peak}.
//
// h100-sxm, h200: measured bf16 cuBLAS through PyTorch (/work/shared/gpu-machine.md):
//   4096x1024x1024 (8.6e9)  360-457 TFLOP/s -> 0.41 (midpoint of two machines)
//   2048^3        (1.7e10)  657 -> 0.66
//   4096^3        (1.4e11)  775 -> 0.78
//   8192^3        (1.1e12)  778-798 -> 0.80
//   (4096x28672x8192, 1.9e12, reached 695 -> 0.70: elongated shapes fall
//   below the plateau; the table keeps the square-GEMM plateau.)
//   Below 8.6e9 the curve follows a ~5 us launch + tail floor (1e9 FLOPs in
//   ~5.5 us -> 0.18; 1e8 -> 0.04).
// Other GPUs, until calibrated (issue 6): the same curve with its FLOPs axis
// scaled by the GPU's peak relative to H100 (a GEMM reaches a given fraction
// of peak when it runs for the same time, i.e. at FLOPs proportional to the
// peak), and the plateau given per GPU in the catalog (simulator/catalog.json)
// from typical cuBLAS results for that generation: a100 0.80 (~250 of 312
// TFLOP/s), v100 0.80 (fp16), b200 0.75, l40s / rtx4090 / rtx3090 0.75, mi300x
// 0.55 (hipBLASLt ~700 of 1307).
// The H100 shape, FLOPs axis at 989 TFLOP/s, efficiency relative to its 0.80 plateau.
constexpr GemmEfficiencyPoint kH100Shape[] = {{1e8, 0.04 / 0.80},     {1e9, 0.18 / 0.80},
                                              {8.6e9, 0.41 / 0.80},   {1.72e10, 0.66 / 0.80},
                                              {1.37e11, 0.78 / 0.80}, {1.1e12, 1.0}};
constexpr double kH100PeakTflops = 989;

}  // namespace

std::vector<GemmEfficiencyPoint> GemmEfficiencyCurve(double peak_tflops, double plateau) {
  std::vector<GemmEfficiencyPoint> table;
  for (const GemmEfficiencyPoint& p : kH100Shape)
    table.push_back({p.flops * peak_tflops / kH100PeakTflops, p.efficiency * plateau});
  return table;
}

}  // namespace p3d
