// CPU AdamW throughput (optimizer offload): fp32 parameters updated per
// second by executor/host/cpu_adam.h over arrays far larger than the caches
// (memory-bound, as in training); results in bench/results/cpu-adam.md.
//
//   BM_CpuAdamStep     one step = the gradient-norm pass + the AdamW update of
//                      all parameters, one call each on a persistent pool.
//                      Arguments: parameters, threads.
//   BM_CpuAdamChunked  the update alone, as the offloaded step runs it: one
//                      call per chunk. spawn:1 starts the threads per call
//                      (HostOptimizer before the pool: 4M-element chunks),
//                      spawn:0 reuses one CpuThreadPool (HostOptimizer now,
//                      kOffloadChunkElements). Arguments: parameters, threads,
//                      chunk, spawn.
//   BM_Dispatch        the per-call cost alone: an empty job for every
//                      thread, spawn:1 starting and joining threads - 1
//                      std::threads, spawn:0 one CpuThreadPool::Run.
//                      Arguments: threads, spawn.
// The time model's node default (DefaultCpuAdamParamsPerS) is argued from the
// per-core and per-GB/s figures recorded in bench/results/cpu-adam.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "executor/host/cpu_adam.h"

namespace p3d {
namespace {

// Bytes one parameter moves: norm read 4; AdamW reads grad, master, m, v (16)
// and writes master, m, v (12) and the bf16 copy (2).
constexpr double kNormBytes = 4, kUpdateBytes = 30;

struct Arrays {
  explicit Arrays(int64_t n) : grads(n), master(n), m(n, 0.0f), v(n, 0.0f), weights(n) {
    for (int64_t i = 0; i < n; ++i) {
      grads[i] = 1e-3f * static_cast<float>((i * 2654435761u) % 2001) - 1.0f;
      master[i] = 0.02f * static_cast<float>(i % 101) / 101.0f;
    }
  }
  std::vector<float> grads, master, m, v;
  std::vector<uint16_t> weights;
};

void SetRates(benchmark::State& state, int64_t n, double bytes_per_param) {
  const double params = static_cast<double>(n) * state.iterations();
  state.counters["params/s"] = benchmark::Counter(params, benchmark::Counter::kIsRate);
  state.counters["GB/s"] =
      benchmark::Counter(params * bytes_per_param / 1e9, benchmark::Counter::kIsRate);
}

void BM_CpuAdamStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  CpuThreadPool pool(static_cast<int>(state.range(1)));
  Arrays a(n);
  CpuAdamWHyper h;
  const CpuAdamWRun all{0, n, true};
  for (auto _ : state) {
    const double norm = std::sqrt(CpuSquaredSum(a.grads.data(), n, pool));
    const float scale = static_cast<float>(std::fmin(1.0, 1.0 / (norm + 1e-6)));
    if (!CpuAdamWUpdate(a.grads.data(), scale, a.master.data(), a.m.data(), a.v.data(),
                        a.weights.data(), {&all, 1}, h, pool)
             .ok())
      state.SkipWithError("CpuAdamWUpdate failed");
    ++h.step;
    benchmark::ClobberMemory();
  }
  SetRates(state, n, kNormBytes + kUpdateBytes);
}
BENCHMARK(BM_CpuAdamStep)
    ->ArgsProduct({{64 << 20}, {1, 2}})
    ->ArgNames({"params", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CpuAdamChunked(benchmark::State& state) {
  const int64_t n = state.range(0), chunk = state.range(2);
  const int threads = static_cast<int>(state.range(1));
  const bool spawn = state.range(3) != 0;
  CpuThreadPool pool(threads);
  Arrays a(n);
  CpuAdamWHyper h;
  for (auto _ : state) {
    for (int64_t b = 0; b < n; b += chunk) {
      const int64_t e = std::min(n, b + chunk);
      const CpuAdamWRun run{b, e, true};
      const Status st =
          spawn ? CpuAdamWUpdate(a.grads.data() + b, 0.5f, a.master.data() + b, a.m.data() + b,
                                 a.v.data() + b, a.weights.data() + b, e - b, h, threads)
                : CpuAdamWUpdate(a.grads.data(), 0.5f, a.master.data(), a.m.data(), a.v.data(),
                                 a.weights.data(), {&run, 1}, h, pool);
      if (!st.ok()) state.SkipWithError("CpuAdamWUpdate failed");
    }
    ++h.step;
    benchmark::ClobberMemory();
  }
  SetRates(state, n, kUpdateBytes);
}
BENCHMARK(BM_CpuAdamChunked)
    ->ArgsProduct({{64 << 20}, {1, 2}, {1 << 22, kOffloadChunkElements}, {1, 0}})
    ->ArgNames({"params", "threads", "chunk", "spawn"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Dispatch(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const bool spawn = state.range(1) != 0;
  CpuThreadPool pool(threads);
  std::vector<int> hits(threads);
  for (auto _ : state) {
    if (spawn) {
      std::vector<std::thread> workers;
      for (int t = 1; t < threads; ++t) workers.emplace_back([&, t] { ++hits[t]; });
      ++hits[0];
      for (std::thread& w : workers) w.join();
    } else {
      pool.Run(threads, [&](int t) { ++hits[t]; });
    }
  }
  benchmark::DoNotOptimize(hits.data());
}
BENCHMARK(BM_Dispatch)
    ->ArgsProduct({{2, 16, 64}, {1, 0}})
    ->ArgNames({"threads", "spawn"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace p3d

BENCHMARK_MAIN();
