// Attention building blocks against float64 CPU references: QKV split into
// heads with rotary (and its backward), the head/token axis swap, and the
// causal softmax forward and backward.
#include <gtest/gtest.h>

#include <cmath>

#include "executor/kernels/heads.h"
#include "executor/kernels/softmax.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

// Element offset of (b, position t, head slot) in its heads-major tensor:
// q [B, KV, S, G, HD] (head = g*G + j), k and v [B, KV, S, HD] (kernels/heads.h).
int64_t HeadsMajorOffset(const HeadShape& s, int64_t b, int64_t t, int64_t slot) {
  const int64_t G = s.heads / s.kv_heads, HD = s.head_dim;
  if (slot < s.heads) return (((b * s.kv_heads + slot / G) * s.seq + t) * G + slot % G) * HD;
  const int64_t kv = slot < s.heads + s.kv_heads ? slot - s.heads : slot - s.heads - s.kv_heads;
  return ((b * s.kv_heads + kv) * s.seq + t) * HD;
}

struct Split {
  std::vector<double> q, k, v;
};

double* HeadsMajor(Split& r, const HeadShape& s, int64_t b, int64_t t, int64_t slot) {
  std::vector<double>& t_ = slot < s.heads ? r.q : slot < s.heads + s.kv_heads ? r.k : r.v;
  return &t_[HeadsMajorOffset(s, b, t, slot)];
}

// Reference of SplitQkvHeads (rotary with double-precision angles).
Split SplitRef(const std::vector<float>& qkv, const HeadShape& s, bool rotary) {
  const int64_t slots = s.heads + 2 * s.kv_heads, HD = s.head_dim, half = HD / 2;
  Split r;
  r.q.resize(s.batch * s.heads * s.seq * HD);
  r.k.resize(s.batch * s.kv_heads * s.seq * HD);
  r.v.resize(r.k.size());
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t t = 0; t < s.seq; ++t)
      for (int64_t slot = 0; slot < slots; ++slot)
        for (int64_t i = 0; i < half; ++i) {
          const float* x = &qkv[((b * s.seq + t) * slots + slot) * HD];
          double c = 1, sn = 0;
          if (rotary && slot < s.heads + s.kv_heads) {
            const double a = t * std::pow(10000.0, -2.0 * i / HD);
            c = std::cos(a);
            sn = std::sin(a);
          }
          double* o = HeadsMajor(r, s, b, t, slot);
          o[i] = x[i] * c - x[i + half] * sn;
          o[i + half] = x[i + half] * c + x[i] * sn;
        }
  return r;
}

void RunSplit(bool rotary) {
  SCOPED_TRACE(rotary ? "rotary" : "plain");
  const HeadShape s{2, 24, 4, 2, 16};  // B, S, NH, KV (GQA), HD
  const int64_t T = s.batch * s.seq, Q3 = (s.heads + 2 * s.kv_heads) * s.head_dim;
  auto qkv = testing::RandomBf16Values(T * Q3, 1);
  Split ref = SplitRef(qkv, s, rotary);
  std::vector<float> cos_t, sin_t;
  BuildRotaryTables(s.seq, s.head_dim, 10000.0, &cos_t, &sin_t);
  DeviceArray<float> dcos(cos_t), dsin(sin_t);
  DeviceArray<bf16> dqkv(testing::ToBf16(qkv)), q(ref.q.size()), k(ref.k.size()), v(ref.v.size());
  q.Poison();
  k.Poison();
  v.Poison();
  ASSERT_TRUE(SplitQkvHeads(dqkv.get(), q.get(), k.get(), v.get(), s, rotary ? dcos.get() : nullptr,
                            rotary ? dsin.get() : nullptr, nullptr)
                  .ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(q.Download()), ref.q), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(k.Download()), ref.k), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(v.Download()), ref.v), testing::kBf16Tol);

  // Backward reference: each (i, i + HD/2) pair was rotated by R(a); the
  // gradient is rotated back by R(a)^T and written tokens-major.
  auto dq = testing::RandomBf16Values(ref.q.size(), 2),
       dk = testing::RandomBf16Values(ref.k.size(), 3);
  auto dv = testing::RandomBf16Values(ref.v.size(), 4);
  std::vector<double> merge_ref(T * Q3, 0.0);
  {
    const int64_t slots = s.heads + 2 * s.kv_heads, HD = s.head_dim, half = HD / 2;
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t t = 0; t < s.seq; ++t)
        for (int64_t slot = 0; slot < slots; ++slot)
          for (int64_t i = 0; i < half; ++i) {
            double c = 1, sn = 0;
            if (rotary && slot < s.heads + s.kv_heads) {
              const double a = t * std::pow(10000.0, -2.0 * i / HD);
              c = std::cos(a);
              sn = std::sin(a);
            }
            const int64_t off = HeadsMajorOffset(s, b, t, slot);
            const float* g = slot < s.heads                ? &dq[off]
                             : slot < s.heads + s.kv_heads ? &dk[off]
                                                           : &dv[off];
            double* o = &merge_ref[((b * s.seq + t) * slots + slot) * HD];
            o[i] = g[i] * c + g[i + half] * sn;
            o[i + half] = -g[i] * sn + g[i + half] * c;
          }
  }
  DeviceArray<bf16> ddq(testing::ToBf16(dq)), ddk(testing::ToBf16(dk)), ddv(testing::ToBf16(dv));
  DeviceArray<bf16> out(T * Q3);
  out.Poison();
  ASSERT_TRUE(MergeQkvHeadsGrad(ddq.get(), ddk.get(), ddv.get(), out.get(), s,
                                rotary ? dcos.get() : nullptr, rotary ? dsin.get() : nullptr,
                                nullptr)
                  .ok());
  EXPECT_LT(testing::RelError(testing::FromBf16(out.Download()), merge_ref), testing::kBf16Tol);
}

TEST(HeadsTest, SplitQkvHeadsAndItsBackward) {
  RunSplit(false);
  RunSplit(true);
}

TEST(HeadsTest, RotaryBackwardIsTheTransposeOfForward) {
  // <Split(x), d> == <x, Merge(d)>: an independent check of the adjoint, in float64.
  const HeadShape s{1, 16, 2, 1, 8};
  const int64_t Q3 = (s.heads + 2 * s.kv_heads) * s.head_dim, T = s.seq;
  auto x = testing::RandomBf16Values(T * Q3, 5);
  Split fx = SplitRef(x, s, true);
  auto dq = testing::RandomBf16Values(fx.q.size(), 6),
       dk = testing::RandomBf16Values(fx.k.size(), 7);
  auto dv = testing::RandomBf16Values(fx.v.size(), 8);
  double lhs = 0;
  for (size_t i = 0; i < fx.q.size(); ++i) lhs += fx.q[i] * dq[i];
  for (size_t i = 0; i < fx.k.size(); ++i) lhs += fx.k[i] * dk[i] + fx.v[i] * dv[i];
  std::vector<float> cos_t, sin_t;
  BuildRotaryTables(s.seq, s.head_dim, 10000.0, &cos_t, &sin_t);
  DeviceArray<float> dcos(cos_t), dsin(sin_t);
  DeviceArray<bf16> ddq(testing::ToBf16(dq)), ddk(testing::ToBf16(dk)), ddv(testing::ToBf16(dv));
  DeviceArray<bf16> out(T * Q3);
  ASSERT_TRUE(MergeQkvHeadsGrad(ddq.get(), ddk.get(), ddv.get(), out.get(), s, dcos.get(),
                                dsin.get(), nullptr)
                  .ok());
  auto m = testing::FromBf16(out.Download());
  double rhs = 0;
  for (int64_t i = 0; i < T * Q3; ++i) rhs += static_cast<double>(x[i]) * m[i];
  EXPECT_NEAR(lhs, rhs, 1e-2 * std::abs(lhs) + 1e-2);
}

TEST(HeadsTest, SwapAxes12BothWays) {
  const int64_t B = 2, A = 3, C = 5, D = 16;
  auto x = testing::RandomBf16Values(B * A * C * D, 9);
  std::vector<double> ref(x.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t d = 0; d < D; ++d)
          ref[((b * C + c) * A + a) * D + d] = x[((b * A + a) * C + c) * D + d];
  DeviceArray<bf16> in(testing::ToBf16(x)), out(x.size()), back(x.size());
  out.Poison();
  back.Poison();
  ASSERT_TRUE(SwapAxes12(in.get(), out.get(), B, A, C, D, nullptr).ok());
  ASSERT_TRUE(SwapAxes12(out.get(), back.get(), B, C, A, D, nullptr).ok());
  EXPECT_EQ(testing::RelError(testing::FromBf16(out.Download()), ref), 0.0);
  EXPECT_EQ(testing::RelError(testing::FromBf16(back.Download()), testing::ToDouble(x)), 0.0);
}

// Scores laid out [B*KV, S, G, S] (row r is position (r / G) % S) with causal
// query blocks: a row reads/writes only columns below its block's end.
TEST(SoftmaxTest, CausalBlockedForwardAndBackward) {
  const int64_t S = 256, G = 2, entries = 3, block = 64, rows = entries * S * G;
  auto x = testing::RandomBf16Values(rows * S, 11, 6.0f);
  auto dp = testing::RandomBf16Values(rows * S, 12);
  auto pos_of = [&](int64_t r) { return (r / G) % S; };
  auto end_of = [&](int64_t r) { return (pos_of(r) / block + 1) * block; };
  std::vector<double> p, ds;  // reference over the written range [0, end) of each row
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = pos_of(r);
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j <= pos; ++j) mx = std::max(mx, static_cast<double>(x[r * S + j]));
    for (int64_t j = 0; j <= pos; ++j) sum += std::exp(x[r * S + j] - mx);
    for (int64_t j = 0; j < end_of(r); ++j)
      p.push_back(j <= pos ? std::exp(x[r * S + j] - mx) / sum : 0.0);
  }
  // Columns at or beyond a row's block end must stay untouched: mark them with 7.
  std::vector<float> x_marked = x;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = end_of(r); j < S; ++j) x_marked[r * S + j] = 7.0f;
  DeviceArray<bf16> buf(testing::ToBf16(x_marked));
  const SoftmaxShape shape{rows, S, G, block};
  ASSERT_TRUE(CausalSoftmaxForward(buf.get(), buf.get(), shape, nullptr).ok());  // in place
  auto got = testing::FromBf16(buf.Download());
  std::vector<float> got_written;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < end_of(r); ++j) got_written.push_back(got[r * S + j]);
    for (int64_t j = pos_of(r) + 1; j < end_of(r); ++j)
      ASSERT_EQ(got[r * S + j], 0.0f) << r << "," << j;
    for (int64_t j = end_of(r); j < S; ++j) ASSERT_EQ(got[r * S + j], 7.0f) << r << "," << j;
  }
  EXPECT_LT(testing::RelError(got_written, p), testing::kBf16Tol);
  // Backward uses the kernel's own bf16 probabilities, as the model does.
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (int64_t j = 0; j <= pos_of(r); ++j)
      dot += static_cast<double>(got[r * S + j]) * dp[r * S + j];
    for (int64_t j = 0; j < end_of(r); ++j)
      ds.push_back(j <= pos_of(r) ? got[r * S + j] * (dp[r * S + j] - dot) : 0.0);
  }
  std::vector<float> dp_marked = dp;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = end_of(r); j < S; ++j) dp_marked[r * S + j] = 7.0f;
  DeviceArray<bf16> dbuf(testing::ToBf16(dp_marked));
  ASSERT_TRUE(CausalSoftmaxBackward(buf.get(), dbuf.get(), dbuf.get(), shape, nullptr).ok());
  auto gds = testing::FromBf16(dbuf.Download());
  std::vector<float> gds_written;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < end_of(r); ++j) gds_written.push_back(gds[r * S + j]);
    for (int64_t j = pos_of(r) + 1; j < end_of(r); ++j) ASSERT_EQ(gds[r * S + j], 0.0f);
    for (int64_t j = end_of(r); j < S; ++j) ASSERT_EQ(gds[r * S + j], 7.0f);
  }
  EXPECT_LT(testing::RelError(gds_written, ds), testing::kBf16Tol);
}

TEST(SoftmaxTest, RejectsBlocksThatDoNotDivideTheSequence) {
  EXPECT_FALSE(CausalSoftmaxForward(nullptr, nullptr, {64, 64, 1, 24}, nullptr).ok());
}

}  // namespace
}  // namespace p3d
