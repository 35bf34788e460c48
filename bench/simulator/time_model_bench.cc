// Speed of the time model on the planner's typical search: Llama-2-70B on 64
// A100-80GB, every DP x TP x PP x VPP x ZeRO x micro-batch x recompute plan of
// a 512 x 2048 batch. Reports plan evaluations per second (items_per_second)
// on one core. Results: bench/simulator/README.md.
#include <benchmark/benchmark.h>

#include <vector>

#include "simulator/pipeline_sim.h"
#include "models/zoo.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

ModelSpec Llama70B() { return ZooModel("llama-2-70b").value(); }

ClusterSpec A100x64() {
  ClusterSpec c = CatalogCluster("a100-80gb").value();
  c.num_gpus = 64;
  return c;
}

std::vector<Plan> Plans() {
  std::vector<Plan> plans;
  for (int tp : {1, 2, 4, 8})
    for (int pp : {1, 2, 4, 8})
      for (int vpp : {1, 2, 5})
        for (int zero : {0, 1, 2, 3})
          for (int64_t mb : {1, 2, 4, 8})
            for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
              Plan p;
              p.tp = tp, p.pp = pp, p.dp = 64 / (tp * pp), p.vpp = vpp, p.zero = zero;
              p.micro_batch = mb, p.recompute = rc, p.sequence_parallel = tp > 1;
              if (512 % (p.dp * mb) != 0 || 80 % (pp * vpp) != 0) continue;
              p.grad_accum = 512 / (p.dp * mb);
              if (vpp > 1 && (pp == 1 || p.grad_accum % pp != 0)) continue;
              plans.push_back(p);
            }
  return plans;
}

// The planner's path: one TimeModel per search, StepSeconds per plan.
void BM_StepSeconds70B64(benchmark::State& state) {
  const std::vector<Plan> plans = Plans();
  TimeModel tm(Llama70B(), TrainingSpec{}, A100x64());
  size_t i = 0;
  double sink = 0;
  for (auto _ : state) {
    sink += tm.StepSeconds(plans[i]);
    if (++i == plans.size()) i = 0;
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
  state.counters["plans"] = static_cast<double>(plans.size());
}
BENCHMARK(BM_StepSeconds70B64);

// The simulation-free lower bound (for branch-and-bound pruning in the search).
void BM_StepLowerBound70B64(benchmark::State& state) {
  const std::vector<Plan> plans = Plans();
  TimeModel tm(Llama70B(), TrainingSpec{}, A100x64());
  size_t i = 0;
  double sink = 0;
  for (auto _ : state) {
    sink += tm.StepLowerBound(plans[i]);
    if (++i == plans.size()) i = 0;
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StepLowerBound70B64);

// Full estimate with breakdown and figures (what --explain and JSON output use).
void BM_Evaluate70B64(benchmark::State& state) {
  const std::vector<Plan> plans = Plans();
  TimeModel tm(Llama70B(), TrainingSpec{}, A100x64());
  size_t i = 0;
  for (auto _ : state) {
    auto e = tm.Evaluate(plans[i]);
    benchmark::DoNotOptimize(e);
    if (++i == plans.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Evaluate70B64);

// One-shot wrapper: builds the caches every call (the slow way).
void BM_EstimateTimeOneShot(benchmark::State& state) {
  Plan p;
  p.dp = 8, p.tp = 4, p.pp = 2, p.zero = 2, p.micro_batch = 2, p.grad_accum = 32;
  const ModelSpec m = Llama70B();
  const ClusterSpec c = A100x64();
  for (auto _ : state) {
    auto e = EstimateTime(m, TrainingSpec{}, c, p);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EstimateTimeOneShot);

// The pipeline simulation alone: steps = 2 * m * PP * VPP compute steps.
void BM_PipelineSim(benchmark::State& state) {
  const int pp = static_cast<int>(state.range(0)), vpp = static_cast<int>(state.range(1));
  const int m = static_cast<int>(state.range(2));
  auto s =
      BuildSchedule(vpp > 1 ? ScheduleKind::kInterleaved1F1B : ScheduleKind::k1F1B, pp, vpp, m);
  PipelineCosts c;
  c.pp = pp, c.vpp = vpp, c.microbatches = m;
  c.forward_s.assign(pp * vpp, 1.0);
  c.backward_s.assign(pp * vpp, 2.0);
  c.p2p_s.assign(pp * vpp - 1, 0.01);
  PipelineSimulator sim;
  PipelineResult r;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sim.Run(*s, c, false, &r));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["steps"] = 2.0 * m * pp * vpp;
}
BENCHMARK(BM_PipelineSim)->Args({2, 1, 32})->Args({8, 1, 64})->Args({8, 2, 64})->Args({8, 1, 512});

}  // namespace
}  // namespace p3d

BENCHMARK_MAIN();
