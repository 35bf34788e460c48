// LayerNorm / RMSNorm forward and backward against float64 CPU references.
#include <gtest/gtest.h>

#include <cmath>

#include "executor/kernels/column_reduce.h"
#include "executor/kernels/norm.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

struct NormRef {
  std::vector<double> y, mean, rstd, dx, dw, db;
};

// dw/db include their initial values (the kernels accumulate).
NormRef Reference(bool rms, const std::vector<float>& x, const std::vector<float>& w,
                  const std::vector<float>& b, const std::vector<float>& dy,
                  const std::vector<float>& dres, const std::vector<float>& dw0,
                  const std::vector<float>& db0, int64_t rows, int64_t H, double eps) {
  NormRef r;
  r.y.resize(rows * H);
  r.dx.resize(rows * H);
  r.dw.assign(dw0.begin(), dw0.end());
  r.db.assign(db0.begin(), db0.end());
  for (int64_t i = 0; i < rows; ++i) {
    double mu = 0, var = 0;
    if (!rms) {
      for (int64_t j = 0; j < H; ++j) mu += x[i * H + j];
      mu /= H;
    }
    for (int64_t j = 0; j < H; ++j) var += (x[i * H + j] - mu) * (x[i * H + j] - mu);
    var /= H;
    const double rs = 1.0 / std::sqrt(var + eps);
    r.mean.push_back(mu);
    r.rstd.push_back(rs);
    double mg = 0, mgx = 0;
    for (int64_t j = 0; j < H; ++j) {
      const double xhat = (x[i * H + j] - mu) * rs;
      r.y[i * H + j] = xhat * w[j] + (rms ? 0.0 : b[j]);
      const double g = dy[i * H + j] * w[j];
      mg += g;
      mgx += g * xhat;
      r.dw[j] += dy[i * H + j] * xhat;
      r.db[j] += dy[i * H + j];
    }
    mg /= H;
    mgx /= H;
    for (int64_t j = 0; j < H; ++j) {
      const double xhat = (x[i * H + j] - mu) * rs;
      const double g = dy[i * H + j] * w[j];
      r.dx[i * H + j] = dres[i * H + j] + rs * (g - (rms ? 0.0 : mg) - xhat * mgx);
    }
  }
  return r;
}

void RunNorm(bool rms, int64_t rows, int64_t H) {
  SCOPED_TRACE(::testing::Message()
               << (rms ? "rms" : "layernorm") << " rows=" << rows << " H=" << H);
  const float eps = 1e-5f;
  auto x = testing::RandomBf16Values(rows * H, 1, 2.0f);
  for (float& v : x) v = RoundToBf16(v + 0.3f);  // non-zero row means exercise LayerNorm's mean
  auto w = testing::RandomBf16Values(H, 2);
  auto b = testing::RandomBf16Values(H, 3);
  auto dy = testing::RandomBf16Values(rows * H, 4);
  auto dres = testing::RandomBf16Values(rows * H, 5);
  auto dw0 = testing::RandomFloats(H, 6), db0 = testing::RandomFloats(H, 7);
  NormRef ref = Reference(rms, x, w, b, dy, dres, dw0, db0, rows, H, eps);

  DeviceArray<bf16> dx_(testing::ToBf16(x)), dw_(testing::ToBf16(w)), db_(testing::ToBf16(b));
  DeviceArray<bf16> y(rows * H), ddy(testing::ToBf16(dy)), dgrad(testing::ToBf16(dres));
  DeviceArray<float> mean(rows), rstd(rows), gw(dw0), gb(db0);
  DeviceArray<float> partials(2 * ColumnPartialsFloats(H));
  y.Poison();
  mean.Poison();
  rstd.Poison();
  NormForwardArgs f{rms ? NormKind::kRmsNorm : NormKind::kLayerNorm,
                    dx_.get(),
                    dw_.get(),
                    rms ? nullptr : db_.get(),
                    y.get(),
                    rms ? nullptr : mean.get(),
                    rstd.get(),
                    rows,
                    H,
                    eps};
  ASSERT_TRUE(NormForward(f, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(y.Download()), ref.y), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(rstd.Download(), ref.rstd), testing::kF32Tol);
  if (!rms) {
    // Means are near zero for some rows: compare in absolute terms against the row scale.
    auto m = mean.Download();
    for (int64_t i = 0; i < rows; ++i) EXPECT_NEAR(m[i], ref.mean[i], 1e-5);
  }
  // Backward in place on the residual gradient (dx aliases dresidual), as the model does.
  NormBackwardArgs bk{f.kind,
                      ddy.get(),
                      dx_.get(),
                      dw_.get(),
                      rms ? nullptr : mean.get(),
                      rstd.get(),
                      dgrad.get(),
                      dgrad.get(),
                      gw.get(),
                      rms ? nullptr : gb.get(),
                      partials.get(),
                      rows,
                      H};
  ASSERT_TRUE(NormBackward(bk, nullptr).ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(dgrad.Download()), ref.dx), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(gw.Download(), ref.dw), 1e-5);
  if (!rms) {
    EXPECT_LT(testing::RelError(gb.Download(), ref.db), 1e-5);
  }
}

TEST(NormTest, LayerNormForwardBackward) {
  RunNorm(false, 300, 256);
  RunNorm(false, 64, 2048);
}

TEST(NormTest, RmsNormForwardBackward) {
  RunNorm(true, 300, 256);
  RunNorm(true, 17, 4096);
}

TEST(NormTest, RejectsHiddenNotMultipleOf8) {
  NormForwardArgs f;
  f.kind = NormKind::kRmsNorm;
  f.rows = 4;
  f.hidden = 100;
  Status s = NormForward(f, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("hidden"), std::string::npos);
}

}  // namespace
}  // namespace p3d
