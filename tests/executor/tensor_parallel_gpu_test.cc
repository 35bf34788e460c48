// Vocab-parallel kernels and the grad-norm adjustment against float64 CPU
// references on one GPU (TensorParallel without a communicator: the
// collectives are the identity, so a shard holding the whole vocabulary must
// reproduce the single-GPU loss, and a shard of it must mask what it does not own).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "executor/kernels/optimizer.h"
#include "executor/tensor_parallel.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

TEST(VocabParallelTest, EmbeddingMasksRowsOutsideTheShard) {
  // V = 100 over TP 2 with 64 rows per rank: rank 1 owns [64, 100).
  const int64_t B = 2, S = 32, T = B * S, H = 64, V = 100, begin = 64, rows = 36;
  auto tokens = testing::RandomTokens(T, V, 1);
  auto wte = testing::RandomBf16Values(rows * H, 2), wpe = testing::RandomBf16Values(S * H, 3);
  std::vector<double> x(T * H), xp(T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t local = tokens[t] - begin;
      x[t * H + j] = local >= 0 && local < rows ? wte[local * H + j] : 0.0;
      xp[t * H + j] = x[t * H + j] + wpe[(t % S) * H + j];
    }
  DeviceArray<int32_t> dtok(tokens);
  DeviceArray<bf16> dwte(testing::ToBf16(wte)), dwpe(testing::ToBf16(wpe)), out(T * H);
  out.Poison();
  ASSERT_TRUE(VocabParallelEmbeddingForward(dtok.get(), dwte.get(), nullptr, begin, rows, out.get(),
                                            T, S, H, nullptr)
                  .ok());
  auto got = testing::FromBf16(out.Download());
  for (int64_t i = 0; i < T * H; ++i) ASSERT_EQ(got[i], static_cast<float>(x[i])) << i;
  out.Poison();
  ASSERT_TRUE(VocabParallelEmbeddingForward(dtok.get(), dwte.get(), dwpe.get(), begin, rows,
                                            out.get(), T, S, H, nullptr)
                  .ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(out.Download()), xp), testing::kBf16Tol);
}

TEST(VocabParallelTest, CrossEntropyOfAWholeShardIsTheSingleGpuLoss) {
  const int64_t rows = 70, V = 1001, ld = 1024;
  const float scale = 1.0f / 300.0f;
  auto logits = testing::RandomFloats(rows * ld, 7, 8.0f);
  auto targets = testing::RandomTokens(rows, V, 8);
  std::vector<double> loss(rows), dlog(rows * V);
  for (int64_t r = 0; r < rows; ++r) {
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(logits[r * ld + j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(logits[r * ld + j] - mx);
    loss[r] = std::log(sum) + mx - logits[r * ld + targets[r]];
    for (int64_t j = 0; j < V; ++j)
      dlog[r * V + j] = (std::exp(logits[r * ld + j] - mx) / sum - (j == targets[r])) * scale;
  }
  DeviceArray<float> dl(logits), losses(rows), stats(3 * rows);
  DeviceArray<int32_t> dt(targets);
  DeviceArray<bf16> dd(rows * ld);
  losses.Poison();
  dd.Poison();
  TensorParallel tp(nullptr);
  VocabParallelLossArgs a{dl.get(), dt.get(), dd.get(), losses.get(), stats.get(), rows,
                          V,        ld,       0,        scale};
  ASSERT_TRUE(VocabParallelCrossEntropy(a, tp, nullptr).ok());
  EXPECT_LT(testing::RelError(losses.Download(), loss), testing::kF32Tol);
  auto g = testing::FromBf16(dd.Download());
  std::vector<float> gv;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < V; ++j) gv.push_back(g[r * ld + j]);
  EXPECT_LT(testing::RelError(gv, dlog), testing::kBf16Tol);
}

TEST(VocabParallelTest, AdjustedNormCountsScaledRanges) {
  const int64_t n = 50001;
  auto g = testing::RandomFloats(n, 9, 0.01f);
  const std::vector<NormScale> ranges = {{100, 6100, 0.5f}, {20000, 20500, 0.0f}};
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    double f = 1.0;
    for (const NormScale& r : ranges)
      if (i >= r.begin && i < r.end) f = r.scale;
    sq += f * g[i] * g[i];
  }
  DeviceArray<float> dg(g);
  DeviceArray<double> partials(kGradNormBlocks);
  DeviceArray<NormScale> dr(ranges.size());
  ASSERT_EQ(cudaMemcpy(dr.get(), ranges.data(), ranges.size() * sizeof(NormScale),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_TRUE(GradSquaredSumPartials(dg.get(), n, partials.get(), nullptr).ok());
  ASSERT_TRUE(AdjustNormPartials(dg.get(), dr.get(), 2, partials.get(), nullptr).ok());
  double got = 0;
  for (double p : partials.Download()) got += p;
  EXPECT_NEAR(got, sq, 1e-9 * sq);
}

}  // namespace
}  // namespace p3d
