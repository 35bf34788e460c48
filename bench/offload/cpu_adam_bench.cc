// CPU AdamW throughput (optimizer offload): fp32 parameters updated per
// second by executor/host/cpu_adam.h, one offloaded optimizer step = the
// gradient-norm pass + the AdamW update, over arrays far larger than the
// caches (memory-bound, as in training). Arguments: parameters, threads.
// The time model's node default (DefaultCpuAdamParamsPerS) is argued from the
// per-core and per-GB/s figures recorded in bench/results/cpu-adam.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "executor/host/cpu_adam.h"

namespace p3d {
namespace {

// Bytes one parameter moves in a step: norm read 4; AdamW reads grad, master,
// m, v (16) and writes master, m, v (12) and the bf16 copy (2).
constexpr double kBytesPerParam = 34;

void BM_CpuAdamStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  std::vector<float> grads(n), master(n), m(n, 0.0f), v(n, 0.0f);
  std::vector<uint16_t> weights(n);
  for (int64_t i = 0; i < n; ++i) {
    grads[i] = 1e-3f * static_cast<float>((i * 2654435761u) % 2001) - 1.0f;
    master[i] = 0.02f * static_cast<float>(i % 101) / 101.0f;
  }
  CpuAdamWHyper h;
  for (auto _ : state) {
    const double norm = std::sqrt(CpuSquaredSum(grads.data(), n, threads));
    const float scale = static_cast<float>(std::fmin(1.0, 1.0 / (norm + 1e-6)));
    if (!CpuAdamWUpdate(grads.data(), scale, master.data(), m.data(), v.data(), weights.data(), n, h,
                        threads)
             .ok())
      state.SkipWithError("CpuAdamWUpdate failed");
    ++h.step;
    benchmark::ClobberMemory();
  }
  const double params = static_cast<double>(n) * state.iterations();
  state.counters["params/s"] = benchmark::Counter(params, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(params * kBytesPerParam / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CpuAdamStep)
    ->ArgsProduct({{64 << 20}, {1, 2}})
    ->ArgNames({"params", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace p3d

BENCHMARK_MAIN();
