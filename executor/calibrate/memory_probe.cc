// Runtime memory and HBM bandwidth probes (probes.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "executor/calibrate/probes.h"
#include "executor/dtype.h"
#include "executor/kernels/elementwise.h"
#include "executor/matmul.h"

namespace p3d {
namespace {

StatusOr<size_t> FreeBytes() {
  size_t free = 0, total = 0;
  P3D_CAL_CUDA(cudaMemGetInfo(&free, &total));
  return free;
}

// One nvidia-smi field of the current device ("memory.total", "driver_version");
// empty when nvidia-smi is unavailable.
std::string NvidiaSmi(const char* field) {
  int dev = 0;
  char bus[32] = {0};
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetPCIBusId(bus, sizeof(bus), dev) != cudaSuccess)
    return "";
  std::string cmd = fmt::format(
      "nvidia-smi --query-gpu={} --format=csv,noheader,nounits -i {} 2>/dev/null", field, bus);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  char buf[128] = {0};
  if (!pipe || !std::fgets(buf, sizeof(buf), pipe.get())) return "";
  std::string v(buf);
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

// nvidia-smi's memory.total (MiB) in bytes; 0 when unavailable.
double NvidiaSmiTotalBytes() {
  const std::string mib = NvidiaSmi("memory.total");
  return mib.empty() ? 0 : std::atof(mib.c_str()) * 1024 * 1024;
}

}  // namespace

std::string DriverVersion() {
  const std::string v = NvidiaSmi("driver_version");
  if (!v.empty()) return v;
  int api = 0;
  cudaDriverGetVersion(&api);
  return fmt::format("CUDA driver API {}", api);
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Say(const std::string& line) const {
  std::cerr << fmt::format("[calibrate {:6.1f} s] {}\n", elapsed_s(), line) << std::flush;
}

StatusOr<nlohmann::json> ProbeRuntime(const Progress& progress) {
  P3D_CAL_CUDA(cudaFree(nullptr));  // creates the context
  size_t free0 = 0, total = 0;
  P3D_CAL_CUDA(cudaMemGetInfo(&free0, &total));
  {
    // A cuBLASLt handle and its first GEMM, as p3d-run has them; the buffers
    // (the workspace lives in p3d-run's arena) are freed before measuring.
    void *ws = nullptr, *a = nullptr, *d = nullptr;
    P3D_CAL_CUDA(cudaMalloc(&ws, Matmul::kWorkspaceBytes));
    P3D_CAL_CUDA(cudaMalloc(&a, 256 * 256 * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&d, 256 * 256 * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMemset(a, 0, 256 * 256 * sizeof(bf16)));
    P3D_ASSIGN_OR_RETURN(std::unique_ptr<Matmul> mm, Matmul::Create(ws, Matmul::kWorkspaceBytes));
    MatmulParams p;
    p.m = p.n = p.k = 256;
    p.a = p.b = static_cast<const bf16*>(a);
    p.trans_b = true;
    p.d = d;
    P3D_RETURN_IF_ERROR(mm->Run(p, nullptr));
    P3D_CAL_CUDA(cudaDeviceSynchronize());
    P3D_CAL_CUDA(cudaFree(a));
    P3D_CAL_CUDA(cudaFree(d));
    P3D_CAL_CUDA(cudaFree(ws));
    P3D_ASSIGN_OR_RETURN(size_t free_ctx, FreeBytes());
    // One arena-sized allocation: how much more than asked does it take?
    // (A whole number of 2 MiB pages: the rounding of an odd size to the
    // next page, < 2 MiB once per arena, is no fraction of it.)
    const size_t request = size_t{1} << 30;
    void* arena = nullptr;
    P3D_CAL_CUDA(cudaMalloc(&arena, request));
    P3D_ASSIGN_OR_RETURN(size_t free_arena, FreeBytes());
    P3D_CAL_CUDA(cudaFree(arena));
    const double taken = static_cast<double>(free_ctx) - static_cast<double>(free_arena);
    nlohmann::json j = {
        {"cuda_total_bytes", total},
        {"free_after_context_bytes", free_ctx},
        {"cublas_bytes", static_cast<double>(free0) - static_cast<double>(free_ctx)},
        {"arena_request_bytes", request},
        {"arena_overhead_bytes", std::max(0.0, taken - request)}};
    const double smi = NvidiaSmiTotalBytes();
    if (smi > 0) j["device_total_bytes"] = smi;
    progress.Say(fmt::format(
        "runtime: card {:.0f} MiB (nvidia-smi), CUDA total {:.0f} MiB, free after context + "
        "cuBLASLt {:.0f} MiB, arena overhead {:.1f} MiB",
        smi / 1048576, total / 1048576.0, free_ctx / 1048576.0,
        std::max(0.0, taken - request) / 1048576));
    return j;
  }
}

StatusOr<nlohmann::json> ProbeHbm(double bytes, const Progress& progress, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(bytes / sizeof(bf16)) / 8 * 8;
  bf16 *a = nullptr, *b = nullptr, *out = nullptr;
  float* tmp = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&a, n * sizeof(bf16)));
  P3D_CAL_CUDA(cudaMalloc(&b, n * sizeof(bf16)));
  P3D_CAL_CUDA(cudaMalloc(&out, n * sizeof(bf16)));
  P3D_CAL_CUDA(cudaMalloc(&tmp, n * sizeof(float)));
  P3D_RETURN_IF_ERROR(InitNormal(tmp, n, 1.0f, 11, 0, stream));
  P3D_RETURN_IF_ERROR(CastToBf16(tmp, a, n, stream));
  P3D_RETURN_IF_ERROR(InitNormal(tmp, n, 1.0f, 11, 1, stream));
  P3D_RETURN_IF_ERROR(CastToBf16(tmp, b, n, stream));
  P3D_CAL_CUDA(cudaFree(tmp));
  const double nbytes = static_cast<double>(n) * sizeof(bf16);
  P3D_ASSIGN_OR_RETURN(double copy_s,
                       TimeLaunches(
                           [&]() -> Status {
                             P3D_CAL_CUDA(cudaMemcpyAsync(out, a, n * sizeof(bf16),
                                                          cudaMemcpyDeviceToDevice, stream));
                             return Status::Ok();
                           },
                           2, 10, stream));
  P3D_ASSIGN_OR_RETURN(
      double add_s,
      TimeLaunches([&]() { return ResidualAdd(a, b, out, n, stream); }, 2, 10, stream));
  // Check a few sums against the host (fp32 add of the two bf16 values, rounded).
  for (int64_t i : {int64_t{0}, n / 3, n - 1}) {
    bf16 x, y, z;
    P3D_CAL_CUDA(cudaMemcpy(&x, a + i, sizeof(bf16), cudaMemcpyDeviceToHost));
    P3D_CAL_CUDA(cudaMemcpy(&y, b + i, sizeof(bf16), cudaMemcpyDeviceToHost));
    P3D_CAL_CUDA(cudaMemcpy(&z, out + i, sizeof(bf16), cudaMemcpyDeviceToHost));
    const float want = RoundToBf16(__bfloat162float(x) + __bfloat162float(y));
    if (__bfloat162float(z) != want)
      return Status::Internal(
          fmt::format("residual add wrong at element {}: {} + {} gave {}, want {}", i,
                      __bfloat162float(x), __bfloat162float(y), __bfloat162float(z), want));
  }
  // The same kernel on smaller operands: small kernels do not reach the
  // bandwidth (launch, tail), and a step is full of them. Successive launches
  // walk through the whole buffers (slice i of n/m), so a slice is touched
  // again only after 3n bytes (>= 768 MiB, --hbm-bytes >= 256 MiB) have
  // passed: more than any catalog card's L2 (50 MiB H100/H200, 126 MiB B200,
  // 256 MiB MI300X Infinity Cache) can hold. Timing one slice over and over
  // measured L2, not HBM (3470 GB/s on an H100 whose HBM gives 3350).
  // Enough launches per size for ~1 ms of timing.
  nlohmann::json sizes = nlohmann::json::array();
  for (int64_t mib : {1, 4, 16, 64}) {
    const int64_t m = std::min(n, mib * (1 << 20) / static_cast<int64_t>(sizeof(bf16)));
    const int64_t slices = n / m;
    const int reps = static_cast<int>(std::max<int64_t>(10, (int64_t{256} << 20) / (m * 2)));
    int64_t launch = 0;
    P3D_ASSIGN_OR_RETURN(double t, TimeLaunches(
                                       [&]() {
                                         const int64_t at = (launch++ % slices) * m;
                                         return ResidualAdd(a + at, b + at, out + at, m, stream);
                                       },
                                       3, reps, stream));
    sizes.push_back({{"bytes", 3.0 * m * sizeof(bf16)}, {"seconds", t}});
    progress.Say(fmt::format("hbm: residual add over {:>3} MiB operands {:7.2f} us, {:5.0f} GB/s",
                             mib, t * 1e6, 3.0 * m * sizeof(bf16) / t / 1e9));
  }
  P3D_CAL_CUDA(cudaFree(a));
  P3D_CAL_CUDA(cudaFree(b));
  P3D_CAL_CUDA(cudaFree(out));
  progress.Say(
      fmt::format("hbm: copy {:.0f} GB/s, residual add {:.0f} GB/s (read + write, {:.0f} MiB "
                  "buffers; sums checked)",
                  2 * nbytes / copy_s / 1e9, 3 * nbytes / add_s / 1e9, nbytes / 1048576));
  return nlohmann::json{{"copy_bytes", 2 * nbytes},
                        {"copy_s", copy_s},
                        {"elementwise_kernel", "ResidualAdd (executor/kernels/elementwise.h)"},
                        {"elementwise_bytes", 3 * nbytes},
                        {"elementwise_s", add_s},
                        {"elementwise_sizes", sizes}};
}

}  // namespace p3d
