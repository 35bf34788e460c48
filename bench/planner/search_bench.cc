// Plan-search speed: legal plans evaluated per second on one core, for the
// main job (70B on 64 H100) and a 1T model on 16384 GPUs. Target (issue 2/3):
// >= 1,000,000 plan evaluations per second per core. Results: bench/results/.
//
// "plans/s" counts legal candidates evaluated (memory for all; step time for
// those that fit, as the search prunes by memory first).
#include <benchmark/benchmark.h>

#include "models/zoo.h"
#include "planner/search.h"
#include "simulator/hardware.h"

namespace p3d {
namespace {

void RunSearch(benchmark::State& state, const std::string& model, const std::string& gpu, int gpus,
               int64_t batch) {
  PlanRequest r;
  r.model = ResolveModel(model).value();
  r.cluster = CatalogCluster(gpu).value();
  r.cluster.num_gpus = gpus;
  r.training.global_batch = batch;
  SearchOptions o;
  int64_t candidates = 0, bounded = 0, simulated = 0;
  for (auto _ : state) {
    StatusOr<SearchResult> res = SearchPlans(r, o);
    candidates += res->candidates;
    bounded += res->bounded;
    simulated += res->simulated;
    benchmark::DoNotOptimize(res);
  }
  state.counters["plans/s"] = benchmark::Counter(double(candidates), benchmark::Counter::kIsRate);
  state.counters["simulated/s"] = benchmark::Counter(double(simulated), benchmark::Counter::kIsRate);
  state.counters["plans"] = double(candidates) / double(state.iterations());
  state.counters["bounded"] = double(bounded) / double(state.iterations());
  state.counters["simulated"] = double(simulated) / double(state.iterations());
}

void BM_Search70bOn64H100(benchmark::State& s) { RunSearch(s, "70B", "h100-sxm", 64, 512); }
void BM_Search1tOn16384A100(benchmark::State& s) { RunSearch(s, "megatron-1t", "a100-80gb", 16384, 4096); }
BENCHMARK(BM_Search70bOn64H100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Search1tOn16384A100)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace p3d

BENCHMARK_MAIN();
