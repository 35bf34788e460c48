// offload_step_bench: times one offloaded optimizer step (executor/offload/
// host_optimizer.h) of N fp32 parameters on this GPU and host, so the
// simulator's offload terms (docs/offload.md "Time") can be checked.
//
// For each N: a HostOptimizer over one slice of N elements is stepped with
// chunk_elements = --chunk (pipelined) and with one chunk of N (serial: copy
// down, CPU AdamW, copy up, one after another). Printed per mode (median of
// --steps steps after one warm-up; OffloadStepStats):
//   d2h GB/s     4N bytes of fp32 gradients / span of the back-to-back copies
//   CPU Mparam/s N / host wall time inside the CPU AdamW
//   h2d GB/s     2N bytes of bf16 weights / summed upload times
//   step s       Step's start to the last upload's end (host wall)
//   bound s      max(d2h, cpu, h2d) + (sum of the other two) / chunks: a
//                perfect three-stage pipeline of equal chunks
// and the simulator's terms for the catalog GPU's node (--gpu): D2H at
// pcie * kHostLinkEfficiency, the CPU step at CpuAdamParamsPerS(node) (the
// whole node's rate; this bench drives one GPU), and the exposed upload
// max(0, up - cpu) + min(cpu, up) / ceil(N / 25M).
//
// Usage: offload_step_bench [--gpu h100-sxm] [--chunk 16777216] [--threads 0]
//                           [--steps 3] [N ...]     (default N: 1e8 3e8 1e9)
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include "executor/check.h"
#include "executor/offload/host_optimizer.h"
#include "simulator/hardware.h"

namespace p3d {
namespace {

constexpr double kSimChunkElements = 25e6;  // the time model's upload chunk (docs/offload.md)

struct Row {
  OffloadStepStats median;
  double alloc_s = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Steps a fresh HostOptimizer over grads -> weights `steps` times after a warm-up.
StatusOr<Row> Measure(int64_t n, int64_t chunk, int threads, int steps, const float* grads,
                      bf16* weights, const float* scale) {
  const auto t0 = std::chrono::steady_clock::now();
  auto opt = HostOptimizer::Create(n, {{0, n, true}}, {chunk, threads});
  if (!opt.ok()) return opt.status();
  Row row;
  row.alloc_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const OffloadSlice slice{0, n, grads, weights};
  P3D_RETURN_IF_ERROR((*opt)->InitMaster({&slice, 1}, nullptr));
  std::vector<OffloadStepStats> all;
  for (int t = 0; t <= steps; ++t) {
    AdamWHyper h;
    h.weight_decay = 0.1f;
    h.step = t + 1;
    OffloadStepStats s;
    P3D_RETURN_IF_ERROR((*opt)->Step({&slice, 1}, scale, h, nullptr, &s));
    if (t > 0) all.push_back(s);  // step 0 warms up
  }
  auto med = [&](double OffloadStepStats::*f) {
    std::vector<double> v;
    for (const auto& s : all) v.push_back(s.*f);
    return Median(v);
  };
  row.median = all[0];
  row.median.d2h_s = med(&OffloadStepStats::d2h_s);
  row.median.h2d_s = med(&OffloadStepStats::h2d_s);
  row.median.cpu_adam_s = med(&OffloadStepStats::cpu_adam_s);
  row.median.wait_s = med(&OffloadStepStats::wait_s);
  row.median.step_s = med(&OffloadStepStats::step_s);
  return row;
}

void PrintRow(int64_t n, const char* mode, const Row& r) {
  const OffloadStepStats& s = r.median;
  const double parts[] = {s.d2h_s, s.cpu_adam_s, s.h2d_s};
  const double longest = *std::max_element(std::begin(parts), std::end(parts));
  const double bound = longest + (s.d2h_s + s.cpu_adam_s + s.h2d_s - longest) / s.chunks;
  std::printf("| %.2e | %s | %lld | %.1f | %.0f | %.1f | %.3f | %.3f | %.3f | %.3f | %.1f |\n",
              static_cast<double>(n), mode, static_cast<long long>(s.chunks),
              s.d2h_bytes / s.d2h_s / 1e9, n / s.cpu_adam_s / 1e6, s.h2d_bytes / s.h2d_s / 1e9,
              s.d2h_s + s.cpu_adam_s + s.h2d_s, s.step_s, bound, s.wait_s, r.alloc_s);
}

Status Run(const std::string& gpu, int64_t chunk, int threads, int steps,
           const std::vector<double>& sizes) {
  auto cluster = CatalogCluster(gpu);
  if (!cluster.ok()) return cluster.status();
  const double link = cluster->node.pcie_bytes_per_s * kHostLinkEfficiency;
  const double cpu_pps = CpuAdamParamsPerS(cluster->node);
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("GPU %s; host threads %d; chunk %lld elements; median of %d steps after 1 warm-up\n",
              prop.name, threads, static_cast<long long>(chunk), steps);
  std::printf(
      "| params | mode | chunks | d2h GB/s | CPU Mparam/s | h2d GB/s | d2h+cpu+h2d s | step s | "
      "bound s | wait s | alloc s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> sim;
  for (double size : sizes) {
    const int64_t n = static_cast<int64_t>(size);
    float *grads = nullptr, *scale = nullptr;
    bf16* weights = nullptr;
    CUDA_CHECK(cudaMalloc(&grads, n * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&weights, n * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&scale, sizeof(float)));
    // Gradients and initial master all 0.0115 (bytes 0x3c); clip scale 1.
    CUDA_CHECK(cudaMemset(grads, 0x3c, n * sizeof(float)));
    const float one = 1.0f;
    CUDA_CHECK(cudaMemcpy(scale, &one, sizeof(float), cudaMemcpyHostToDevice));
    for (const auto& [mode, c] : {std::pair{"pipelined", chunk}, std::pair{"serial", n}}) {
      auto row = Measure(n, c, threads, steps, grads, weights, scale);
      if (!row.ok()) return row.status();
      PrintRow(n, mode, *row);
    }
    CUDA_CHECK(cudaFree(grads));
    CUDA_CHECK(cudaFree(weights));
    CUDA_CHECK(cudaFree(scale));
    const double d2h = 4 * size / link, up = 2 * size / link, cpu = size / cpu_pps;
    const double exposed_up =
        std::max(0.0, up - cpu) + std::min(cpu, up) / std::ceil(size / kSimChunkElements);
    sim.push_back(fmt::format("| {:.2e} | {:.3f} | {:.3f} | {:.3f} | {:.3f} |", size, d2h, cpu, up,
                              cpu + exposed_up));
  }
  std::printf(
      "\nsimulator, catalog %s node: host link %.1f GB/s (pcie x %.1f), CPU AdamW %.2e params/s\n"
      "| params | d2h s | cpu s | h2d s | cpu + exposed upload s |\n|---|---|---|---|---|\n",
      gpu.c_str(), link / 1e9, kHostLinkEfficiency, cpu_pps);
  for (const std::string& line : sim) std::printf("%s\n", line.c_str());
  return Status::Ok();
}

}  // namespace
}  // namespace p3d

int main(int argc, char** argv) {
  CLI::App app{"offload_step_bench: one offloaded optimizer step, timed per phase"};
  std::string gpu = "h100-sxm";
  int64_t chunk = p3d::kOffloadChunkElements;
  int threads = 0, steps = 3;
  std::vector<double> sizes{1e8, 3e8, 1e9};
  app.add_option("--gpu", gpu, "catalog GPU whose node the simulator columns use");
  app.add_option("--chunk", chunk, "elements per chunk in the pipelined mode")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU AdamW threads (0: all hardware threads)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "timed steps per mode")->check(CLI::PositiveNumber);
  app.add_option("sizes", sizes, "parameter counts");
  CLI11_PARSE(app, argc, argv);
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  p3d::Status st = p3d::Run(gpu, chunk, threads, steps, sizes);
  if (!st.ok()) {
    std::fprintf(stderr, "offload_step_bench: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
