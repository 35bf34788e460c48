// Embedding forward/backward, fused cross-entropy and the optimizer kernels
// against float64 CPU references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "executor/kernels/cross_entropy.h"
#include "executor/kernels/embedding.h"
#include "executor/kernels/optimizer.h"
#include "executor/token_buckets.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

TEST(EmbeddingTest, ForwardBackwardWithPositions) {
  const int64_t B = 3, S = 40, T = B * S, H = 64, V = 50;  // V small: many repeated tokens
  auto tokens = testing::RandomTokens(T, V, 1);
  auto wte = testing::RandomBf16Values(V * H, 2), wpe = testing::RandomBf16Values(S * H, 3);
  auto dx = testing::RandomBf16Values(T * H, 4);
  auto gte0 = testing::RandomFloats(V * H, 5), gpe0 = testing::RandomFloats(S * H, 6);
  std::vector<double> x(T * H), gte(gte0.begin(), gte0.end()), gpe(gpe0.begin(), gpe0.end());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < H; ++j) {
      x[t * H + j] = static_cast<double>(wte[tokens[t] * H + j]) + wpe[(t % S) * H + j];
      gte[tokens[t] * H + j] += dx[t * H + j];
      gpe[(t % S) * H + j] += dx[t * H + j];
    }
  TokenBuckets bk = BuildTokenBuckets(tokens);
  DeviceArray<int32_t> dtok(tokens), btok(bk.token), boff(bk.offset), bpos(bk.positions);
  DeviceArray<bf16> dwte(testing::ToBf16(wte)), dwpe(testing::ToBf16(wpe)), out(T * H);
  DeviceArray<bf16> ddx(testing::ToBf16(dx));
  DeviceArray<float> dgte(gte0), dgpe(gpe0);
  out.Poison();
  ASSERT_TRUE(
      EmbeddingForward(dtok.get(), dwte.get(), dwpe.get(), out.get(), T, S, H, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(out.Download()), x), testing::kBf16Tol);
  ASSERT_TRUE(EmbeddingBackward(ddx.get(), btok.get(), boff.get(), bpos.get(),
                                static_cast<int64_t>(bk.token.size()), H, dgte.get(), nullptr)
                  .ok());
  ASSERT_TRUE(PositionEmbeddingBackward(ddx.get(), B, S, H, dgpe.get(), nullptr).ok());
  EXPECT_LT(testing::RelError(dgte.Download(), gte), testing::kF32Tol);
  EXPECT_LT(testing::RelError(dgpe.Download(), gpe), testing::kF32Tol);
}

TEST(CrossEntropyTest, LossAndGradientOfAChunk) {
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
  DeviceArray<float> dl(logits), losses(rows), total(std::vector<float>{0.5f});
  DeviceArray<int32_t> dt(targets);
  DeviceArray<bf16> dd(rows * ld);
  losses.Poison();
  dd.Poison();
  CrossEntropyArgs a{dl.get(), dt.get(), dd.get(), losses.get(), rows, V, ld, scale};
  ASSERT_TRUE(CrossEntropyForwardBackward(a, nullptr).ok());
  ASSERT_TRUE(AccumulateLossSum(losses.get(), rows, total.get(), nullptr).ok());
  auto got = losses.Download();
  EXPECT_LT(testing::RelError(got, loss), testing::kF32Tol);
  auto g = testing::FromBf16(dd.Download());
  std::vector<float> gv;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < V; ++j) gv.push_back(g[r * ld + j]);
  EXPECT_LT(testing::RelError(gv, dlog), testing::kBf16Tol);
  double sum = 0.5;
  for (double l : loss) sum += l;
  EXPECT_NEAR(total.Download()[0], sum, 1e-5 * sum);
}

TEST(OptimizerTest, GradNormClipBothSides) {
  const int64_t n = 300001;
  auto g = testing::RandomFloats(n, 9, 0.01f);
  double sq = 0;
  for (float x : g) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  DeviceArray<float> dg(g), out(2);
  DeviceArray<double> partials(kGradNormBlocks);
  for (double max_norm : {norm / 2, norm * 2}) {
    out.Poison();
    ASSERT_TRUE(GradNormClip(dg.get(), n, static_cast<float>(max_norm), partials.get(), out.get(),
                             out.get() + 1, nullptr)
                    .ok());
    auto r = out.Download();
    EXPECT_NEAR(r[0], norm, 1e-5 * norm);
    EXPECT_NEAR(r[1], std::min(1.0, max_norm / (norm + 1e-6)), 1e-6);
  }
}

TEST(OptimizerTest, AdamWThreeStepsMatchTorchFormula) {
  const int64_t n = 10007;
  AdamWHyper h;
  h.lr = 1e-2f;
  h.weight_decay = 0.1f;
  auto w0 = testing::RandomFloats(n, 10);
  std::vector<double> w(w0.begin(), w0.end()), m(n, 0.0), v(n, 0.0);
  DeviceArray<float> master(w0), dm(std::vector<float>(n, 0.0f)), dv(std::vector<float>(n, 0.0f));
  DeviceArray<bf16> weights(n);
  const float clip = 0.5f;
  DeviceArray<float> scale(std::vector<float>{clip});
  for (int step = 1; step <= 3; ++step) {
    auto g = testing::RandomFloats(n, 20 + step);
    DeviceArray<float> dg(g);
    h.step = step;
    weights.Poison();
    ASSERT_TRUE(AdamWUpdate(dg.get(), scale.get(), master.get(), dm.get(), dv.get(), weights.get(),
                            n, h, nullptr)
                    .ok());
    const double b1 = h.beta1, b2 = h.beta2;
    for (int64_t i = 0; i < n; ++i) {
      const double gi = static_cast<double>(g[i]) * clip;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      w[i] *= 1 - static_cast<double>(h.lr) * h.weight_decay;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, step)) + h.eps;
      w[i] -= h.lr / (1 - std::pow(b1, step)) * m[i] / denom;
    }
  }
  EXPECT_LT(testing::RelError(master.Download(), w), testing::kF32Tol);
  EXPECT_LT(testing::RelError(dm.Download(), m), testing::kF32Tol);
  EXPECT_LT(testing::RelError(dv.Download(), v), testing::kF32Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(weights.Download()), w), testing::kBf16Tol);
}

}  // namespace
}  // namespace p3d
