// The cuBLASLt wrapper against a float64 CPU product of the same bf16 inputs,
// for every transpose combination, bias, accumulation, padded leading
// dimensions and the strided-batched attention shapes; the GELU and
// bias-gradient epilogues against the same product with the op applied after.
#include <gtest/gtest.h>

#include <cmath>
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

// GELU (tanh approximation) and its derivative, float64.
double Gelu(double x) {
  const double c = std::sqrt(2.0 / M_PI), u = c * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(u));
}
double GeluGrad(double x) {
  const double c = std::sqrt(2.0 / M_PI), t = std::tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}

// Linear-layer shapes: x [m, k] @ w^T ([n, k] stored), as the MLP's fc1.
struct Epilogued {
  int64_t m = 64, n = 96, k = 128;
  std::vector<float> x = testing::RandomBf16Values(m * k, 60);
  std::vector<float> w = testing::RandomBf16Values(n * k, 61, 0.2f);
  std::vector<float> bias = testing::RandomBf16Values(n, 62);
  DeviceArray<bf16> dx{testing::ToBf16(x)}, dw{testing::ToBf16(w)}, dbias{testing::ToBf16(bias)};
  DeviceArray<char> workspace{Matmul::kWorkspaceBytes};
  std::unique_ptr<Matmul> mm = Matmul::Create(workspace.get(), Matmul::kWorkspaceBytes).value();
  double Product(int64_t i, int64_t j) const {
    double acc = 0;
    for (int64_t p = 0; p < k; ++p) acc += double{x[i * k + p]} * w[j * k + p];
    return acc;
  }
  MatmulParams Params(bf16* out) const {
    MatmulParams p;
    p.m = m, p.n = n, p.k = k;
    p.a = dx.get(), p.b = dw.get(), p.trans_b = true, p.d = out;
    return p;
  }
};

TEST(MatmulEpilogueTest, GeluAuxBiasStoresThePreActivationAndItsGelu) {
  Epilogued e;
  DeviceArray<bf16> out(e.m * e.n), aux(e.m * e.n);
  out.Poison();
  aux.Poison();
  MatmulParams p = e.Params(out.get());
  p.bias = e.dbias.get();
  p.epilogue = Epilogue::kGeluAux;
  p.aux = aux.get();
  ASSERT_TRUE(e.mm->Run(p, nullptr).ok());
  std::vector<double> pre, act;
  for (int64_t i = 0; i < e.m; ++i)
    for (int64_t j = 0; j < e.n; ++j) {
      pre.push_back(e.Product(i, j) + e.bias[j]);
      act.push_back(Gelu(pre.back()));
    }
  EXPECT_LT(testing::RelError(testing::FromBf16(aux.Download()), pre), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(out.Download()), act), testing::kBf16Tol);
}

TEST(MatmulEpilogueTest, DGeluMultipliesTheProductByTheGeluDerivative) {
  Epilogued e;
  const std::vector<float> pre = testing::RandomBf16Values(e.m * e.n, 63, 2.0f);
  DeviceArray<bf16> out(e.m * e.n), aux(testing::ToBf16(pre));
  out.Poison();
  MatmulParams p = e.Params(out.get());
  p.epilogue = Epilogue::kDGelu;
  p.aux = aux.get();
  ASSERT_TRUE(e.mm->Run(p, nullptr).ok());
  std::vector<double> ref;
  for (int64_t i = 0; i < e.m; ++i)
    for (int64_t j = 0; j < e.n; ++j) ref.push_back(e.Product(i, j) * GeluGrad(pre[i * e.n + j]));
  EXPECT_LT(testing::RelError(testing::FromBf16(out.Download()), ref), testing::kBf16Tol);
}

TEST(MatmulEpilogueTest, RowSumsOfAAreTheWeightGradientGemmsBiasGradient) {
  // dW [n_out, k_in] += dY^T X with dY [rows, n_out]: A = dY^T, row sums = db.
  const int64_t rows = 192, out = 72, in = 40;
  const auto dy = testing::RandomBf16Values(rows * out, 70);
  const auto x = testing::RandomBf16Values(rows * in, 71);
  const auto g0 = testing::RandomFloats(out * in, 72);
  DeviceArray<bf16> ddy(testing::ToBf16(dy)), dx(testing::ToBf16(x));
  DeviceArray<float> grad(out * in), sums(out);
  grad.Upload(g0);
  sums.Poison();
  DeviceArray<char> workspace(Matmul::kWorkspaceBytes);
  auto mm = Matmul::Create(workspace.get(), Matmul::kWorkspaceBytes);
  ASSERT_TRUE(mm.ok());
  MatmulParams p;
  p.m = out, p.n = in, p.k = rows;
  p.a = ddy.get(), p.trans_a = true, p.b = dx.get();
  p.d = grad.get(), p.d_type = DType::kF32, p.beta = 1.0f;
  p.a_row_sums = sums.get();
  ASSERT_TRUE(mm.value()->Run(p, nullptr).ok());
  std::vector<double> ref_grad(g0.begin(), g0.end()), ref_sums(out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      ref_sums[o] += dy[r * out + o];
      for (int64_t i = 0; i < in; ++i) ref_grad[o * in + i] += double{dy[r * out + o]} * x[r * in + i];
    }
  EXPECT_LT(testing::RelError(grad.Download(), ref_grad), 1e-5);
  EXPECT_LT(testing::RelError(sums.Download(), ref_sums), 1e-5);
}

TEST(MatmulEpilogueTest, RejectsEpiloguesItCannotRun) {
  Epilogued e;
  DeviceArray<bf16> out(e.m * e.n);
  MatmulParams p = e.Params(out.get());
  p.epilogue = Epilogue::kGeluAux;  // no aux buffer
  Status s = e.mm->Run(p, nullptr);
  EXPECT_NE(s.message().find("aux buffer"), std::string::npos) << s.message();
  p.epilogue = Epilogue::kNone;
  p.aux = out.get();  // aux without an epilogue
  s = e.mm->Run(p, nullptr);
  EXPECT_NE(s.message().find("needs a GELU epilogue"), std::string::npos) << s.message();
  p.aux = nullptr;
  p.a_row_sums = out.get();
  p.bias = e.dbias.get();
  s = e.mm->Run(p, nullptr);
  EXPECT_NE(s.message().find("row sums"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p3d
