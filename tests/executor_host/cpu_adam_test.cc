// CPU AdamW (offload): bit-exact against a scalar restatement of the GPU
// kernel's formula (executor/kernels/optimizer.cu, same fp32 operation
// order), close to a float64 AdamW, independent of the thread count.
#include "executor/host/cpu_adam.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace p3d {
namespace {

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
    s.grads[i] = normal(rng) * (i % 7 == 0 ? 1e-4f : 1e-2f);
    s.master[i] = normal(rng) * 0.02f;
    s.m[i] = normal(rng) * 1e-3f;
    s.v[i] = std::fabs(normal(rng)) * 1e-6f;
  }
  return s;
}

// The GPU kernel's formula, one element at a time (optimizer.cu AdamWKernel
// and the constants AdamWUpdate computes on the host), over [begin, end)
// with weight decay wd (default: all elements, h.weight_decay).
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
void ScalarAdamW(State& s, float scale, const CpuAdamWHyper& h) {
  ScalarAdamW(s, scale, h, h.weight_decay, 0, static_cast<int64_t>(s.grads.size()));
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void Step(State& s, float scale, const CpuAdamWHyper& h, int threads) {
  ASSERT_TRUE(CpuAdamWUpdate(s.grads.data(), scale, s.master.data(), s.m.data(), s.v.data(),
                             s.weights.data(), static_cast<int64_t>(s.grads.size()), h, threads)
                  .ok());
}

TEST(CpuAdamTest, MatchesGpuFormulaBitForBitAtAnyThreadCount) {
  for (int64_t n : {1, 15, 16, 1000, 4099}) {
    for (int threads : {1, 2, 3, 7}) {
      State cpu = RandomState(n, 42), ref = cpu;
      CpuAdamWHyper h{.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
      for (int64_t t = 1; t <= 5; ++t) {
        h.step = t;
        Step(cpu, 0.5f, h, threads);
        ScalarAdamW(ref, 0.5f, h);
      }
      EXPECT_TRUE(SameBits(cpu.master, ref.master)) << "n=" << n << " threads=" << threads;
      EXPECT_TRUE(SameBits(cpu.m, ref.m)) << "n=" << n << " threads=" << threads;
      EXPECT_TRUE(SameBits(cpu.v, ref.v)) << "n=" << n << " threads=" << threads;
      EXPECT_EQ(cpu.weights, ref.weights) << "n=" << n << " threads=" << threads;
    }
  }
}

// Ten AdamW steps in fp32 against the same steps in float64 (torch.optim.AdamW
// semantics): master within 2e-6 absolute (weights ~0.02, lr 1e-3: about 10
// fp32 roundings of ~1e-9 each, plus the moments' errors).
TEST(CpuAdamTest, CloseToFloat64AdamW) {
  const int64_t n = 2048;
  State s = RandomState(n, 7);
  std::vector<double> w(s.master.begin(), s.master.end()), m(s.m.begin(), s.m.end()),
      v(s.v.begin(), s.v.end());
  CpuAdamWHyper h{.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  for (int64_t t = 1; t <= 10; ++t) {
    h.step = t;
    Step(s, 1.0f, h, 2);
    const double b1 = h.beta1, b2 = h.beta2, lr = h.lr;
    for (int64_t i = 0; i < n; ++i) {
      const double g = s.grads[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      w[i] = w[i] * (1 - lr * h.weight_decay) - lr * mhat / (std::sqrt(vhat) + h.eps);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(s.master[i], w[i], 2e-6) << i;
    // m can cancel to near 0 (terms ~1e-3): absolute floor of 10 roundings of 1e-3 terms.
    EXPECT_NEAR(s.m[i], m[i], 1e-6 * std::fabs(m[i]) + 1e-9) << i;
    EXPECT_NEAR(s.v[i], v[i], 1e-5 * std::fabs(v[i]) + 1e-18) << i;
    // The working weights are the master rounded to bf16 (8 significant bits).
    uint32_t bits = static_cast<uint32_t>(s.weights[i]) << 16;
    float bf;
    std::memcpy(&bf, &bits, 4);
    EXPECT_LE(std::fabs(bf - s.master[i]), std::fabs(s.master[i]) / 256) << i;
  }
}

// Adam's first step moves every weight by lr (m_hat / sqrt(v_hat) = sign(g)
// when |g| >> eps), the property that makes lr a step size.
TEST(CpuAdamTest, FirstStepMovesEachWeightByLr) {
  State s = RandomState(64, 3);
  std::fill(s.m.begin(), s.m.end(), 0.0f);
  std::fill(s.v.begin(), s.v.end(), 0.0f);
  const std::vector<float> before = s.master;
  CpuAdamWHyper h{.lr = 1e-3f, .eps = 1e-12f, .weight_decay = 0.0f, .step = 1};
  Step(s, 1.0f, h, 1);
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_NEAR(before[i] - s.master[i], std::copysign(1e-3, s.grads[i]), 1e-8) << i;
}

TEST(CpuAdamTest, Bf16RoundsToNearestEven) {
  auto bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return Bf16BitsRne(f);
  };
  EXPECT_EQ(bits(0x3F808000u), 0x3F80);  // tie, even below
  EXPECT_EQ(bits(0x3F818000u), 0x3F82);  // tie, even above
  EXPECT_EQ(bits(0x3F808001u), 0x3F81);  // above the tie
  EXPECT_EQ(bits(0x7F800000u), 0x7F80);  // +inf stays inf
  EXPECT_EQ(bits(0x7FC00001u), 0x7FC0);  // NaN stays NaN
}

TEST(CpuAdamTest, SquaredSumMatchesDouble) {
  State s = RandomState(100003, 11);
  double ref = 0;
  for (float g : s.grads) ref += static_cast<double>(g) * g;
  for (int threads : {1, 4}) EXPECT_NEAR(CpuSquaredSum(s.grads.data(), 100003, threads), ref, 1e-5 * ref);
}

TEST(CpuAdamTest, RejectsBadArguments) {
  State s = RandomState(4, 1);
  CpuAdamWHyper h;
  h.step = 0;
  EXPECT_FALSE(CpuAdamWUpdate(s.grads.data(), 1, s.master.data(), s.m.data(), s.v.data(),
                              s.weights.data(), 4, h, 1)
                   .ok());
  h.step = 1;
  EXPECT_FALSE(CpuAdamWUpdate(s.grads.data(), 1, s.master.data(), s.m.data(), s.v.data(),
                              s.weights.data(), 4, h, 0)
                   .ok());
  EXPECT_FALSE(CpuAdamWUpdate(nullptr, 1, s.master.data(), s.m.data(), s.v.data(), s.weights.data(),
                              4, h, 1)
                   .ok());
}

// CpuThreadPool and the run-wise AdamW, the path the offloaded step takes: one
// persistent pool, many calls, each a chunk of decay-on / decay-off runs.
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
