// CpuThreadPool and the run-wise CPU AdamW (executor/host/cpu_adam.h), the
// path the offloaded step takes: one persistent pool, many calls, each call
// a chunk of decay-on / decay-off runs. Checked bit for bit against a scalar
// restatement of the GPU kernel's formula (no tolerance: same fp32 operations
// in the same order) and for independence from the pool size.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "executor/host/cpu_adam.h"

namespace p3d {
namespace {

TEST(CpuThreadPoolTest, RunsEveryPartyOncePerCallAcrossManyCalls) {
  CpuThreadPool pool(4);
  ASSERT_EQ(pool.size(), 4);
  for (int parties : {1, 2, 4, 9, 0}) {
    const int expected = std::clamp(parties, 1, 4);
    for (int call = 0; call < 200; ++call) {
      std::vector<std::atomic<int>> hits(4);
      pool.Run(parties, [&](int i) { hits[i].fetch_add(1); });
      for (int i = 0; i < 4; ++i) ASSERT_EQ(hits[i].load(), i < expected ? 1 : 0) << parties;
    }
  }
  EXPECT_EQ(CpuThreadPool(0).size(), 1);
}

struct State {
  std::vector<float> grads, master, m, v;
  std::vector<uint16_t> weights;
};

State RandomState(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  State s;
  s.grads.resize(n), s.master.resize(n), s.m.resize(n), s.v.resize(n), s.weights.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    s.grads[i] = normal(rng) * 1e-2f;
    s.master[i] = normal(rng) * 0.02f;
    s.m[i] = normal(rng) * 1e-3f;
    s.v[i] = std::fabs(normal(rng)) * 1e-6f;
  }
  return s;
}

// The GPU kernel's formula over [begin, end) (optimizer.cu AdamWKernel and
// the constants its launcher computes), weight decay wd.
void ScalarAdamW(State& s, float scale, const CpuAdamWHyper& h, float wd, int64_t begin,
                 int64_t end) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const float decay_factor = static_cast<float>(1.0 - static_cast<double>(h.lr) * wd);
  const float step_size = static_cast<float>(h.lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  for (int64_t i = begin; i < end; ++i) {
    const float g = s.grads[i] * scale;
    const float mi = h.beta1 * s.m[i] + (1.0f - h.beta1) * g;
    const float vi = h.beta2 * s.v[i] + (1.0f - h.beta2) * g * g;
    s.m[i] = mi;
    s.v[i] = vi;
    float w = s.master[i] * decay_factor;
    w -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + h.eps);
    s.master[i] = w;
    s.weights[i] = Bf16BitsRne(w);
  }
}

bool Same(const State& a, const State& b) {
  auto eq = [](const std::vector<float>& x, const std::vector<float>& y) {
    return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  return eq(a.master, b.master) && eq(a.m, b.m) && eq(a.v, b.v) && a.weights == b.weights;
}

// 1.2M elements (enough for 4 threads of >= kCpuAdamMinPerThread each) cut
// into chunks at odd offsets, each chunk's runs alternating decay on / off at
// odd places, as HostOptimizer cuts a ZeRO shard; 3 steps on one pool.
TEST(CpuAdamPoolTest, ChunkedRunsMatchScalarFormulaBitForBitAtAnyPoolSize) {
  const int64_t n = 1'200'007;
  const std::vector<int64_t> cuts = {0, 17, 300'001, 300'002, 777'777, 1'000'000, n};
  const std::vector<int64_t> chunk_ends = {123'457, 700'000, n};
  CpuAdamWHyper h{.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  const State init = RandomState(n, 5);
  State ref = init;
  for (int64_t t = 1; t <= 3; ++t) {
    h.step = t;
    for (size_t r = 0; r + 1 < cuts.size(); ++r)
      ScalarAdamW(ref, 0.75f, h, r % 2 ? 0.0f : h.weight_decay, cuts[r], cuts[r + 1]);
  }
  for (int threads : {1, 3, 4}) {
    CpuThreadPool pool(threads);
    State cpu = init;
    for (int64_t t = 1; t <= 3; ++t) {
      h.step = t;
      int64_t begin = 0;
      for (int64_t end : chunk_ends) {
        std::vector<CpuAdamWRun> runs;
        for (size_t r = 0; r + 1 < cuts.size(); ++r) {
          const int64_t b = std::max(begin, cuts[r]), e = std::min(end, cuts[r + 1]);
          if (b < e) runs.push_back({b, e, r % 2 == 0});
        }
        ASSERT_TRUE(CpuAdamWUpdate(cpu.grads.data(), 0.75f, cpu.master.data(), cpu.m.data(),
                                   cpu.v.data(), cpu.weights.data(), runs, h, pool)
                        .ok());
        begin = end;
      }
    }
    EXPECT_TRUE(Same(cpu, ref)) << "threads=" << threads;
  }
}

TEST(CpuAdamPoolTest, SquaredSumOnAPoolMatchesDouble) {
  const State s = RandomState(300'001, 9);
  double ref = 0;
  for (float g : s.grads) ref += static_cast<double>(g) * g;
  CpuThreadPool pool(3);
  for (int call = 0; call < 3; ++call)
    EXPECT_NEAR(CpuSquaredSum(s.grads.data(), 300'001, pool), ref, 1e-5 * ref);
}

TEST(CpuAdamPoolTest, RejectsRunsThatAreNotContiguous) {
  State s = RandomState(100, 1);
  CpuThreadPool pool(2);
  const CpuAdamWHyper h;
  const CpuAdamWRun gap[] = {{0, 40, true}, {50, 100, false}};
  const Status st = CpuAdamWUpdate(s.grads.data(), 1, s.master.data(), s.m.data(), s.v.data(),
                                   s.weights.data(), gap, h, pool);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("run 1 is [50, 100)"), std::string::npos) << st.message();
  const CpuAdamWRun backwards[] = {{10, 5, true}};
  EXPECT_FALSE(CpuAdamWUpdate(s.grads.data(), 1, s.master.data(), s.m.data(), s.v.data(),
                              s.weights.data(), backwards, h, pool)
                   .ok());
  // No elements: nothing to do, even with null arrays.
  const CpuAdamWRun empty[] = {{7, 7, true}};
  EXPECT_TRUE(CpuAdamWUpdate(nullptr, 1, nullptr, nullptr, nullptr, nullptr, empty, h, pool).ok());
}

}  // namespace
}  // namespace p3d
