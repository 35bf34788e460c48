// The FP8 GEMM (executor/fp8_matmul.h, E4M3 x E4M3 -> bf16, per-tensor
// scales) against a float64 CPU product of the dequantized inputs, i.e. of
// exactly the values the GPU multiplies. Tolerance: ||out - ref|| / ||ref||
// <= 1e-2 (kBf16Tol: the bf16 output's rounding gives ~2e-3; fast
// accumulation, TE's forward setting, stays inside it at these K), and every
// element within 2^-7 of its row's scale.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "executor/fp8_matmul.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

bool HasFp8TensorCores() {
  cudaDeviceProp prop;
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major * 10 + prop.minor >= 89;
}

struct Case {
  int64_t m, n, k;
  float a_scale, b_scale;  // quantization scales (the GEMM gets their inverses)
  bool fast_accum;
};

class Fp8MatmulTest : public ::testing::TestWithParam<Case> {};

TEST_P(Fp8MatmulTest, MatchesTheCpuOnDequantizedInputs) {
  if (!HasFp8TensorCores()) GTEST_SKIP() << "FP8 GEMMs need compute capability >= 8.9";
  const Case c = GetParam();
  DeviceArray<float> a_f(testing::RandomFloats(c.m * c.k, 1, 2.0f)), b_f(testing::RandomFloats(c.n * c.k, 2, 2.0f));
  DeviceArray<fp8e4m3> a(c.m * c.k), b(c.n * c.k);
  ASSERT_TRUE(QuantizeE4m3(a_f.get(), a.get(), c.m * c.k, c.a_scale, nullptr).ok());
  ASSERT_TRUE(QuantizeE4m3(b_f.get(), b.get(), c.n * c.k, c.b_scale, nullptr).ok());
  // One allocation per scale: cuBLASLt wants them 16-byte aligned.
  DeviceArray<float> a_deq(std::vector<float>{1.0f / c.a_scale}), b_deq(std::vector<float>{1.0f / c.b_scale});
  DeviceArray<bf16> d(c.m * c.n);
  d.Poison();
  DeviceArray<char> ws(size_t{32} << 20);
  auto mm = Fp8Matmul::Create(ws.get(), ws.size());
  ASSERT_TRUE(mm.ok()) << mm.status().ToString();
  const Fp8MatmulParams p{c.m, c.n, c.k, a.get(), b.get(), a_deq.get(), b_deq.get(), d.get(), c.fast_accum};
  const Status s = (*mm)->Run(p, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();

  // The CPU reads the same E4M3 bytes, dequantized.
  const std::vector<fp8e4m3> ha = a.Download(), hb = b.Download();
  std::vector<double> ref(c.m * c.n), row_scale(c.m, 0);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double acc = 0, mag = 0;
      for (int64_t t = 0; t < c.k; ++t) {
        const double x = static_cast<float>(ha[i * c.k + t]) / c.a_scale;
        const double y = static_cast<float>(hb[j * c.k + t]) / c.b_scale;
        acc += x * y;
        mag += std::fabs(x * y);
      }
      ref[i * c.n + j] = acc;
      row_scale[i] = std::max(row_scale[i], mag);
    }
  const std::vector<bf16> out = d.Download();
  EXPECT_LE(testing::RelError(out, ref), testing::kBf16Tol);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j)
      ASSERT_LE(std::fabs(__bfloat162float(out[i * c.n + j]) - ref[i * c.n + j]), row_scale[i] / 128)
          << "(" << i << ", " << j << ")";
}

INSTANTIATE_TEST_SUITE_P(Shapes, Fp8MatmulTest,
                         ::testing::Values(Case{64, 64, 64, 1.0f, 1.0f, false},
                                           Case{128, 256, 512, 16.0f, 4.0f, false},
                                           Case{256, 96, 1024, 8.0f, 8.0f, true},
                                           Case{48, 512, 4096, 32.0f, 2.0f, true}));

TEST(Fp8Matmul, RefusesAKNotDivisibleBy16) {
  DeviceArray<char> ws(1 << 20);
  auto mm = Fp8Matmul::Create(ws.get(), ws.size());
  ASSERT_TRUE(mm.ok());
  DeviceArray<fp8e4m3> a(64 * 24), b(64 * 24);
  DeviceArray<float> scale(std::vector<float>{1.0f});
  DeviceArray<bf16> d(64 * 64);
  const Status s = (*mm)->Run({64, 64, 24, a.get(), b.get(), scale.get(), scale.get(), d.get(), false}, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("multiple of 16"), std::string::npos) << s.message();
}

TEST(Fp8Matmul, RefusesAScalePointerThatIsNot16ByteAligned) {
  DeviceArray<char> ws(1 << 20);
  auto mm = Fp8Matmul::Create(ws.get(), ws.size());
  ASSERT_TRUE(mm.ok());
  DeviceArray<fp8e4m3> a(64 * 64), b(64 * 64);
  DeviceArray<float> scales(std::vector<float>{1.0f, 1.0f});
  DeviceArray<bf16> d(64 * 64);
  const Status s =
      (*mm)->Run({64, 64, 64, a.get(), b.get(), scales.get(), scales.get() + 1, d.get(), false}, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("16-byte aligned"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p3d
