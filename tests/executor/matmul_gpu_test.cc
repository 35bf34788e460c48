// The cuBLASLt wrapper against a float64 CPU product of the same bf16 inputs,
// for every transpose combination, bias, accumulation, padded leading
// dimensions and the strided-batched attention shapes.
#include <gtest/gtest.h>

#include <memory>

#include "executor/matmul.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

struct Case {
  int64_t m, n, k;
  bool ta, tb;
  DType out;
  bool bias;
  float alpha, beta;
  int batch;
  bool pad;  // leading dims rounded up to a multiple of 64 (as the logits chunk)
};

// Row-major reference of MatmulParams semantics.
std::vector<double> Reference(const Case& c, const std::vector<float>& a, int64_t lda,
                              const std::vector<float>& b, int64_t ldb,
                              const std::vector<float>& d0, int64_t ldd,
                              const std::vector<float>& bias, int64_t sa, int64_t sb, int64_t sd) {
  std::vector<double> d(d0.begin(), d0.end());
  for (int bt = 0; bt < c.batch; ++bt)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          const double av = c.ta ? a[bt * sa + p * lda + i] : a[bt * sa + i * lda + p];
          const double bv = c.tb ? b[bt * sb + j * ldb + p] : b[bt * sb + p * ldb + j];
          acc += av * bv;
        }
        double& out = d[bt * sd + i * ldd + j];
        out = c.alpha * acc + c.beta * out + (c.bias ? bias[j] : 0.0);
      }
  return d;
}

void RunCase(const Case& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << c.ta
                                    << " tb=" << c.tb << " batch=" << c.batch);
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  auto ld = [&](int64_t cols) { return c.pad ? (cols + 63) / 64 * 64 : cols; };
  const int64_t lda = ld(a_cols), ldb = ld(b_cols), ldd = ld(c.n);
  const int64_t sa = a_rows * lda, sb = b_rows * ldb, sd = c.m * ldd;
  auto a = testing::RandomBf16Values(sa * c.batch, seed);
  auto b = testing::RandomBf16Values(sb * c.batch, seed + 1);
  auto bias = testing::RandomBf16Values(c.n, seed + 2);
  // Accumulation starts from non-zero values; overwrite starts from poison.
  std::vector<float> d0 = c.beta != 0 ? testing::RandomFloats(sd * c.batch, seed + 3)
                                      : std::vector<float>(sd * c.batch, 0.0f);
  DeviceArray<bf16> da(testing::ToBf16(a)), db(testing::ToBf16(b)), dbias(testing::ToBf16(bias));
  DeviceArray<char> workspace(Matmul::kWorkspaceBytes);
  auto mm = Matmul::Create(workspace.get(), Matmul::kWorkspaceBytes);
  ASSERT_TRUE(mm.ok()) << mm.status().ToString();
  MatmulParams p;
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.a = da.get();
  p.trans_a = c.ta;
  p.lda = lda;
  p.b = db.get();
  p.trans_b = c.tb;
  p.ldb = ldb;
  p.ldd = ldd;
  p.alpha = c.alpha;
  p.beta = c.beta;
  p.d_type = c.out;
  p.bias = c.bias ? dbias.get() : nullptr;
  p.batch = c.batch;
  p.stride_a = sa;
  p.stride_b = sb;
  p.stride_d = sd;
  std::vector<double> ref = Reference(c, a, lda, b, ldb, d0, ldd, bias, sa, sb, sd);
  // Compare only the [m, n] part of each padded row (padding is not written).
  auto valid = [&](auto const& full) {
    std::vector<double> out;
    for (int bt = 0; bt < c.batch; ++bt)
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n; ++j)
          out.push_back(static_cast<double>(full[bt * sd + i * ldd + j]));
    return out;
  };
  const std::vector<double> ref_valid = valid(ref);
  if (c.out == DType::kF32) {
    DeviceArray<float> dd(d0.size());
    if (c.beta != 0)
      dd.Upload(d0);
    else
      dd.Poison();
    p.d = dd.get();
    ASSERT_TRUE(mm.value()->Run(p, nullptr).ok());
    EXPECT_LT(testing::RelError(valid(dd.Download()), ref_valid), 1e-5);
  } else {
    DeviceArray<bf16> dd(d0.size());
    if (c.beta != 0)
      dd.Upload(testing::ToBf16(d0));
    else
      dd.Poison();
    p.d = dd.get();
    ASSERT_TRUE(mm.value()->Run(p, nullptr).ok());
    EXPECT_LT(testing::RelError(valid(testing::FromBf16(dd.Download())), ref_valid),
              testing::kBf16Tol);
  }
}

TEST(MatmulTest, AllTransposesFp32Out) {
  uint32_t seed = 10;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      RunCase({96, 80, 136, ta, tb, DType::kF32, false, 1.0f, 0.0f, 1, false}, seed++);
}

TEST(MatmulTest, Bf16OutWithBiasLikeALinearLayer) {
  RunCase({128, 192, 64, false, true, DType::kBf16, true, 1.0f, 0.0f, 1, false}, 20);
}

TEST(MatmulTest, AccumulatesIntoFp32LikeWeightGradients) {
  RunCase({64, 96, 256, true, false, DType::kF32, false, 1.0f, 1.0f, 1, false}, 30);
}

TEST(MatmulTest, PaddedLeadingDimensionsOddSizesLikeTheLogitsChunk) {
  // logits = x head^T (n = V odd), dx = dlogits head (k = V), dhead += dlogits^T x (m = V).
  RunCase({40, 257, 64, false, true, DType::kF32, false, 1.0f, 0.0f, 1, true}, 40);
  RunCase({40, 64, 257, false, false, DType::kBf16, false, 1.0f, 0.0f, 1, true}, 41);
  RunCase({257, 64, 40, true, false, DType::kF32, false, 1.0f, 1.0f, 1, true}, 42);
}

TEST(MatmulTest, StridedBatchedAttentionShapes) {
  // scores = alpha q k^T, then P v, then dk = dS^T q (G*S = 2*64 rows, HD = 32).
  RunCase({128, 64, 32, false, true, DType::kBf16, false, 0.125f, 0.0f, 3, false}, 50);
  RunCase({128, 32, 64, false, false, DType::kBf16, false, 1.0f, 0.0f, 3, false}, 51);
  RunCase({64, 32, 128, true, false, DType::kBf16, false, 0.125f, 0.0f, 3, false}, 52);
}

TEST(MatmulTest, RejectsBadArgumentsWithAMessage) {
  DeviceArray<char> workspace(Matmul::kWorkspaceBytes);
  auto mm = Matmul::Create(workspace.get(), Matmul::kWorkspaceBytes);
  ASSERT_TRUE(mm.ok());
  DeviceArray<bf16> x(64);
  MatmulParams p;
  p.m = 8;
  p.n = 8;
  p.k = 0;
  p.a = x.get();
  p.b = x.get();
  p.d = x.get();
  Status s = mm.value()->Run(p, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("k=0"), std::string::npos) << s.message();
  p.k = 8;
  p.lda = 4;
  s = mm.value()->Run(p, nullptr);
  EXPECT_NE(s.message().find("lda=4"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p3d
