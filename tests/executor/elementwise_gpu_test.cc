// Residual add, cast, initialisation, fill, bias-gradient column sums, MLP
// activations: each against a float64 CPU reference.
#include <gtest/gtest.h>

#include <cmath>

#include "executor/kernels/activation.h"
#include "executor/kernels/column_reduce.h"
#include "executor/kernels/elementwise.h"
#include "executor/rng.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

TEST(ElementwiseTest, ResidualAddInPlace) {
  const int64_t n = 8 * 1000;
  auto a = testing::RandomBf16Values(n, 1), b = testing::RandomBf16Values(n, 2);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<double>(a[i]) + b[i];
  DeviceArray<bf16> da(testing::ToBf16(a)), db(testing::ToBf16(b));
  ASSERT_TRUE(ResidualAdd(da.get(), db.get(), da.get(), n, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(da.Download()), ref), testing::kBf16Tol);
}

TEST(ElementwiseTest, CastRoundsToNearestEvenLikeTheHost) {
  const int64_t n = 100003;
  auto x = testing::RandomFloats(n, 3, 100.0f);
  DeviceArray<float> dx(x);
  DeviceArray<bf16> out(n);
  out.Poison();
  ASSERT_TRUE(CastToBf16(dx.get(), out.get(), n, nullptr).ok());
  auto got = out.Download();
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, static_cast<const void*>(&got[i]), 2);
    mismatches += bits != FloatToBf16Bits(x[i]);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(ElementwiseTest, InitNormalMatchesTheHostFormulaAndIsStandardNormal) {
  const int64_t n = 1 << 20;
  DeviceArray<float> out(n);
  out.Poison();
  ASSERT_TRUE(InitNormal(out.get(), n, 0.02f, 42, 7, nullptr).ok());
  auto got = out.Download();
  std::vector<double> ref(n);
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    float u1, u2;
    TwoUniforms(RandomBits(42, 7, i), &u1, &u2);
    ref[i] = 0.02 * std::sqrt(-2.0 * std::log(static_cast<double>(u1))) * std::cos(2 * M_PI * u2);
    sum += got[i];
    sq += static_cast<double>(got[i]) * got[i];
  }
  EXPECT_LT(testing::RelError(got, ref), 1e-5);
  // Sample mean and std of 2^20 draws: standard error 0.02/1024 ~ 2e-5 for the mean.
  EXPECT_NEAR(sum / n, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sq / n), 0.02, 2e-4);
}

TEST(ElementwiseTest, Fill) {
  DeviceArray<float> out(1001);
  out.Poison();
  ASSERT_TRUE(Fill(out.get(), 1001, 1.5f, nullptr).ok());
  for (float v : out.Download()) ASSERT_EQ(v, 1.5f);
}

TEST(ColumnReduceTest, BiasGradAccumulatesColumnSums) {
  for (int64_t rows : {5, 128, 1000}) {
    const int64_t n = 384;
    auto dy = testing::RandomBf16Values(rows * n, 10 + rows);
    auto g0 = testing::RandomFloats(n, 11);
    std::vector<double> ref(g0.begin(), g0.end());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) ref[j] += dy[r * n + j];
    DeviceArray<bf16> ddy(testing::ToBf16(dy));
    DeviceArray<float> g(g0), partials(ColumnPartialsFloats(n));
    partials.Poison();
    ASSERT_TRUE(BiasGradAccumulate(ddy.get(), rows, n, partials.get(), g.get(), nullptr).ok());
    EXPECT_LT(testing::RelError(g.Download(), ref), 1e-5) << "rows " << rows;
  }
}

double GeluRef(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(ActivationTest, GeluForwardBackward) {
  const int64_t n = 8 * 5000;
  auto x = testing::RandomBf16Values(n, 20, 4.0f), dy = testing::RandomBf16Values(n, 21);
  std::vector<double> y(n), dx(n);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = GeluRef(x[i]);
    const double h = 1e-6;  // central difference in float64 is exact to ~1e-9 here
    dx[i] = dy[i] * (GeluRef(x[i] + h) - GeluRef(x[i] - h)) / (2 * h);
  }
  DeviceArray<bf16> dxin(testing::ToBf16(x)), dout(n), ddy(testing::ToBf16(dy)), ddx(n);
  dout.Poison();
  ddx.Poison();
  ASSERT_TRUE(GeluForward(dxin.get(), dout.get(), n, nullptr).ok());
  ASSERT_TRUE(GeluBackward(ddy.get(), dxin.get(), ddx.get(), n, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(dout.Download()), y), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(ddx.Download()), dx), testing::kBf16Tol);
}

TEST(ActivationTest, SwiGluForwardBackward) {
  const int64_t rows = 37, F = 264;
  auto gu = testing::RandomBf16Values(rows * 2 * F, 30, 3.0f);
  auto dh = testing::RandomBf16Values(rows * F, 31);
  std::vector<double> h(rows * F), dgu(rows * 2 * F);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < F; ++j) {
      const double g = gu[r * 2 * F + j], u = gu[r * 2 * F + F + j], d = dh[r * F + j];
      const double s = 1 / (1 + std::exp(-g));
      h[r * F + j] = g * s * u;
      dgu[r * 2 * F + j] = d * u * (s + g * s * (1 - s));
      dgu[r * 2 * F + F + j] = d * g * s;
    }
  DeviceArray<bf16> dgu_in(testing::ToBf16(gu)), dhout(rows * F), ddh(testing::ToBf16(dh));
  DeviceArray<bf16> ddgu(rows * 2 * F);
  dhout.Poison();
  ddgu.Poison();
  ASSERT_TRUE(SwiGluForward(dgu_in.get(), dhout.get(), rows, F, nullptr).ok());
  ASSERT_TRUE(SwiGluBackward(ddh.get(), dgu_in.get(), ddgu.get(), rows, F, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(dhout.Download()), h), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(ddgu.Download()), dgu), testing::kBf16Tol);
}

}  // namespace
}  // namespace p3d
