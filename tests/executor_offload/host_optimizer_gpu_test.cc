// HostOptimizer (executor/offload/host_optimizer.h) against the GPU AdamW
// (executor/kernels/optimizer.h) on one hand-built ZeRO shard: two owned
// slices with an unowned gap, decay runs cut at odd places, chunks smaller
// than the slices, gradient norms both above and below the clip threshold.
//
// Tolerances (the CPU code has no FMA contraction, nvcc's does, cpu_adam.h):
//   bf16 weights: every element within 1 bf16 ulp of the GPU's (same sign,
//     bit patterns differing by <= 1); the measured count of 1-ulp elements
//     is printed.
//   fp32 master: |cpu - gpu| <= steps * 3 * FLT_EPSILON * max(|w|, lr): about
//     two fp32 ulps of the weight per step (a rounding flip of w - update,
//     plus the update's own relative FMA error, scaled to lr, for weights near
//     0), with headroom for other contraction choices of another nvcc. On H100
//     (nvcc 13.0) the worst was 18.65 FLT_EPSILON * max(|w|, lr) after 10
//     steps (limit 30); bf16: 41 of 2e6 weights 1 ulp apart; m, v: 8e-8
//     (bench/results/offload-h100.md).
//   Adam m, v: ||cpu - gpu|| / ||gpu|| <= 1e-6 (a few fp32 ulps).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "executor/kernels/optimizer.h"
#include "executor/offload/host_optimizer.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;
using testing::RandomFloats;
using testing::ToBf16;

constexpr int64_t kGlobal = 2'400'000;  // elements of the full (global) buffers
constexpr int64_t kChunk = 100'000;
constexpr int kSteps = 10;

// Rank-style shard: global [4096, 704099) and [1000000, 2299997), stored back
// to back; decay off / on / off runs inside each slice at odd offsets.
ZeroLayout TestLayout() {
  ZeroLayout z;
  z.zero = 1;
  z.slices = {{4096, 4096 + 700'003, 0}, {1'000'000, 1'000'000 + 1'299'997, 700'003}};
  z.local_numel = 2'000'000;
  for (const OwnedSlice& s : z.slices) {
    const int64_t cuts[] = {s.begin, s.begin + 17, s.begin + 500'003, s.end};
    for (int r = 0; r < 3; ++r)
      z.segments.push_back({cuts[r], cuts[r + 1], s.local + (cuts[r] - s.begin), r == 1});
  }
  return z;
}

AdamWHyper Hyper(int64_t step) {
  AdamWHyper h;
  h.lr = 1e-2f;  // large, so one step moves weights by several bf16 ulps
  h.weight_decay = 0.1f;
  h.step = step;
  return h;
}

uint16_t Bits(bf16 b) {
  uint16_t u;
  std::memcpy(&u, static_cast<const void*>(&b), 2);
  return u;
}

// The GPU path of Model::OptimizerStep for the layout: clip by the norm of
// the global gradients, then one AdamW launch per segment.
struct GpuReference {
  explicit GpuReference(const ZeroLayout& z, const std::vector<float>& init)
      : zero(z), master(z.local_numel), m(z.local_numel), v(z.local_numel), weights(ToBf16(init)) {
    std::vector<float> local(z.local_numel);
    for (const OwnedSlice& s : z.slices)
      std::copy(init.begin() + s.begin, init.begin() + s.end, local.begin() + s.local);
    master.Upload(local);
    m.Upload(std::vector<float>(z.local_numel, 0.0f));
    v.Upload(std::vector<float>(z.local_numel, 0.0f));
  }
  void Step(const float* grads, const float* scale, int64_t t) {
    for (const AdamSegment& seg : zero.segments) {
      AdamWHyper h = Hyper(t);
      h.weight_decay = seg.decay ? h.weight_decay : 0.0f;
      ASSERT_TRUE(AdamWUpdate(grads + seg.begin, scale, master.get() + seg.local,
                              m.get() + seg.local, v.get() + seg.local, weights.get() + seg.begin,
                              seg.end - seg.begin, h, nullptr)
                      .ok());
    }
  }
  const ZeroLayout& zero;
  DeviceArray<float> master, m, v;
  DeviceArray<bf16> weights;
};

// Gradients of step t: zero outside the owned slices (as after a reduction),
// alternately small (norm ~0.8 < max_norm 1: scale 1) and large (clipped).
std::vector<float> Gradients(const ZeroLayout& z, int t) {
  std::vector<float> g = RandomFloats(kGlobal, 1000 + t, t % 2 ? 1e-3f : 1e-2f);
  std::vector<float> out(kGlobal, 0.0f);
  for (const OwnedSlice& s : z.slices)
    std::copy(g.begin() + s.begin, g.begin() + s.end, out.begin() + s.begin);
  return out;
}

TEST(HostOptimizerTest, MatchesGpuAdamWWithinOneBf16Ulp) {
  const ZeroLayout z = TestLayout();
  const std::vector<float> init = RandomFloats(kGlobal, 7, 0.5f);
  GpuReference ref(z, init);
  DeviceArray<float> full(init);            // the GPU init's fp32 parameters
  DeviceArray<bf16> weights(ToBf16(init));  // the offloaded run's working weights
  DeviceArray<float> grads(kGlobal), shard(z.local_numel);
  DeviceArray<double> partials(kGradNormBlocks);
  DeviceArray<float> norm(1), scale(1);

  auto opt = HostOptimizer::Create(z.local_numel, ZeroDecayRanges(z), {kChunk, 4});
  ASSERT_TRUE(opt.ok()) << opt.status().ToString();
  ASSERT_TRUE(
      (*opt)->InitMaster(ZeroOffloadSlices(z, full.get(), false, weights.get()), nullptr).ok());
  int clipped = 0;
  for (int t = 1; t <= kSteps; ++t) {
    grads.Upload(Gradients(z, t));
    ASSERT_TRUE(
        GradNormClip(grads.get(), kGlobal, 1.0f, partials.get(), norm.get(), scale.get(), nullptr)
            .ok());
    clipped += scale.Download()[0] < 1.0f;
    ref.Step(grads.get(), scale.get(), t);
    // Odd steps read the full gradient buffer (ZeRO-0/1), even ones a
    // compact shard (ZeRO-2/3's reduced gradients).
    const bool local = t % 2 == 0;
    if (local) {
      for (const OwnedSlice& s : z.slices) {
        ASSERT_EQ(cudaMemcpy(shard.get() + s.local, grads.get() + s.begin, s.size() * 4,
                             cudaMemcpyDeviceToDevice),
                  cudaSuccess);
      }
    }
    const auto slices =
        ZeroOffloadSlices(z, local ? shard.get() : grads.get(), local, weights.get());
    Status st = (*opt)->Step(slices, scale.get(), Hyper(t), nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, kSteps);

  const std::vector<bf16> wg = ref.weights.Download(), wc = weights.Download();
  int64_t one_ulp = 0, moved = 0;
  for (int64_t i = 0; i < kGlobal; ++i) {
    const int d = std::abs(int{Bits(wc[i])} - int{Bits(wg[i])});
    ASSERT_LE(d, 1) << "element " << i;
    one_ulp += d;
    moved += Bits(wg[i]) != FloatToBf16Bits(init[i]);
  }
  EXPECT_GT(moved, z.local_numel * 9 / 10);  // the steps changed the owned weights

  const std::vector<float> mg = ref.master.Download();
  const std::span<float> mc = (*opt)->master();
  double worst = 0;  // in units of the tolerance's fp32 ulp scale
  for (int64_t i = 0; i < z.local_numel; ++i) {
    const double scale_i = FLT_EPSILON * std::max<double>(std::fabs(mg[i]), Hyper(1).lr);
    const double ulps = std::fabs(double{mc[i]} - mg[i]) / scale_i;
    worst = std::max(worst, ulps);
    ASSERT_LE(ulps, 3.0 * kSteps) << "master element " << i << ": " << mc[i] << " vs " << mg[i];
  }
  const double m_err =
      testing::RelError(std::vector<float>((*opt)->adam_m().begin(), (*opt)->adam_m().end()),
                        testing::ToDouble(ref.m.Download()));
  const double v_err =
      testing::RelError(std::vector<float>((*opt)->adam_v().begin(), (*opt)->adam_v().end()),
                        testing::ToDouble(ref.v.Download()));
  EXPECT_LE(m_err, 1e-6);
  EXPECT_LE(v_err, 1e-6);
  std::printf(
      "after %d steps: bf16 weights 1 ulp apart: %lld of %lld owned (%.2e); master worst %.2f "
      "eps*max(|w|,lr); m rel %.2e, v rel %.2e; %d steps clipped\n",
      kSteps, static_cast<long long>(one_ulp), static_cast<long long>(z.local_numel),
      static_cast<double>(one_ulp) / z.local_numel, worst, m_err, v_err, clipped);
}

// Chunking and threads only schedule the work: results are bit-identical.
// A chunk processed before its gradients arrived would differ.
TEST(HostOptimizerTest, ChunkingAndThreadsDoNotChangeResults) {
  const ZeroLayout z = TestLayout();
  const std::vector<float> init = RandomFloats(kGlobal, 11, 0.5f);
  DeviceArray<float> full(init), grads(kGlobal), scale(std::vector<float>{0.75f});
  DeviceArray<bf16> wa(ToBf16(init)), wb(ToBf16(init));
  auto a = HostOptimizer::Create(z.local_numel, ZeroDecayRanges(z), {kChunk / 7, 3});
  auto b = HostOptimizer::Create(z.local_numel, ZeroDecayRanges(z), {kGlobal, 1});
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->InitMaster(ZeroOffloadSlices(z, full.get(), false, wa.get()), nullptr).ok());
  ASSERT_TRUE((*b)->InitMaster(ZeroOffloadSlices(z, full.get(), false, wb.get()), nullptr).ok());
  for (int t = 1; t <= 3; ++t) {
    grads.Upload(Gradients(z, t));
    ASSERT_TRUE((*a)->Step(ZeroOffloadSlices(z, grads.get(), false, wa.get()), scale.get(),
                           Hyper(t), nullptr)
                    .ok());
    ASSERT_TRUE((*b)->Step(ZeroOffloadSlices(z, grads.get(), false, wb.get()), scale.get(),
                           Hyper(t), nullptr)
                    .ok());
  }
  const std::vector<bf16> xa = wa.Download(), xb = wb.Download();
  for (int64_t i = 0; i < kGlobal; ++i) ASSERT_EQ(Bits(xa[i]), Bits(xb[i])) << i;
  ASSERT_EQ(std::memcmp((*a)->master().data(), (*b)->master().data(), z.local_numel * 4), 0);
}

// Checkpoint: restoring master/m/v and repeating a step reproduces it exactly.
TEST(HostOptimizerTest, RestoredStateRepeatsAStepBitForBit) {
  const ZeroLayout z = TestLayout();
  const std::vector<float> init = RandomFloats(kGlobal, 13, 0.5f);
  DeviceArray<float> full(init), grads(kGlobal), scale(std::vector<float>{1.0f});
  DeviceArray<bf16> w(ToBf16(init));
  auto opt = HostOptimizer::Create(z.local_numel, ZeroDecayRanges(z), {kChunk, 2});
  ASSERT_TRUE(opt.ok());
  HostOptimizer& o = **opt;
  ASSERT_TRUE(o.InitMaster(ZeroOffloadSlices(z, full.get(), false, w.get()), nullptr).ok());
  const auto slices = ZeroOffloadSlices(z, grads.get(), false, w.get());
  for (int t = 1; t <= 2; ++t) {
    grads.Upload(Gradients(z, t));
    ASSERT_TRUE(o.Step(slices, scale.get(), Hyper(t), nullptr).ok());
  }
  const std::vector<float> master(o.master().begin(), o.master().end()),
      m(o.adam_m().begin(), o.adam_m().end()), v(o.adam_v().begin(), o.adam_v().end());
  grads.Upload(Gradients(z, 3));
  OffloadStepStats stats;
  ASSERT_TRUE(o.Step(slices, scale.get(), Hyper(3), nullptr, &stats).ok());
  const std::vector<bf16> first = w.Download();
  const std::vector<float> first_master(o.master().begin(), o.master().end());
  std::copy(master.begin(), master.end(), o.master().begin());
  std::copy(m.begin(), m.end(), o.adam_m().begin());
  std::copy(v.begin(), v.end(), o.adam_v().begin());
  ASSERT_TRUE(o.Step(slices, scale.get(), Hyper(3), nullptr).ok());
  const std::vector<bf16> again = w.Download();
  for (int64_t i = 0; i < kGlobal; ++i) ASSERT_EQ(Bits(first[i]), Bits(again[i])) << i;
  EXPECT_EQ(std::memcmp(first_master.data(), o.master().data(), z.local_numel * 4), 0);

  // The stats describe the step: 8 + 13 chunks of <= kChunk, 4 bytes down and
  // 2 up per element, every phase took time.
  EXPECT_EQ(stats.chunks, 8 + 13);
  EXPECT_EQ(stats.d2h_bytes, z.local_numel * 4);
  EXPECT_EQ(stats.h2d_bytes, z.local_numel * 2);
  EXPECT_GT(stats.d2h_s, 0);
  EXPECT_GT(stats.h2d_s, 0);
  EXPECT_GT(stats.cpu_adam_s, 0);
  EXPECT_GE(stats.step_s, stats.cpu_adam_s);
}

TEST(HostOptimizerTest, RejectsRangesThatDoNotTileTheShard) {
  EXPECT_FALSE(HostOptimizer::Create(0, {}).ok());
  auto gap = HostOptimizer::Create(100, {{0, 40, true}, {50, 50, false}});
  ASSERT_FALSE(gap.ok());
  EXPECT_NE(gap.status().message().find("decay ranges must tile [0, 100)"), std::string::npos)
      << gap.status().message();
  EXPECT_FALSE(HostOptimizer::Create(100, {{0, 90, true}}).ok());
  EXPECT_FALSE(HostOptimizer::Create(100, {{0, 100, true}}, {0, 1}).ok());

  auto opt = HostOptimizer::Create(100, {{0, 100, true}});
  ASSERT_TRUE(opt.ok());
  DeviceArray<float> g(100), scale(1);
  DeviceArray<bf16> w(100);
  const OffloadSlice short_slice{0, 99, g.get(), w.get()};
  Status st = (*opt)->Step({&short_slice, 1}, scale.get(), Hyper(1), nullptr);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("slices must tile"), std::string::npos) << st.message();
  const OffloadSlice whole{0, 100, g.get(), w.get()};
  EXPECT_FALSE((*opt)->Step({&whole, 1}, scale.get(), Hyper(0), nullptr).ok());
}

}  // namespace
}  // namespace p3d
