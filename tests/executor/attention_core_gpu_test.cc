// AttentionCore (executor/attention_core.h) end to end against a float64 CPU
// causal attention: tokens-major qkv in, tokens-major output; its backward
// from an output gradient to the tokens-major dqkv. GQA (2 query heads per
// kv head) and 2 causal query blocks, so the blocked GEMMs, the masking of the
// block's upper triangle and the group sums of dk/dv are all exercised.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "executor/attention_core.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

struct Reference {
  std::vector<double> out;   // [B, S, NH*HD]
  std::vector<double> dqkv;  // [B, S, (NH + 2 KV) * HD]
};

// qkv and dout as the GPU reads them (bf16 values); no rotary.
Reference CausalAttention(const AttentionCoreShape& s, const std::vector<float>& qkv,
                          const std::vector<float>& dout) {
  const int64_t B = s.batch, S = s.seq, NH = s.heads, KV = s.kv_heads, HD = s.head_dim;
  const int64_t G = NH / KV, width = (NH + 2 * KV) * HD;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HD));
  auto at = [&](int64_t b, int64_t t, int64_t slot, int64_t d) {
    return ((b * S + t) * (NH + 2 * KV) + slot) * HD + d;
  };
  Reference r;
  r.out.assign(B * S * NH * HD, 0.0);
  r.dqkv.assign(B * S * width, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t ks = NH + h / G, vs = NH + KV + h / G;
      for (int64_t i = 0; i < S; ++i) {
        std::vector<double> p(i + 1), dp(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < HD; ++d) dot += qkv[at(b, i, h, d)] * qkv[at(b, j, ks, d)];
          mx = std::max(mx, p[j] = dot * scale);
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (double& x : p) x /= sum;
        double pdp = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < HD; ++d) {
            r.out[((b * S + i) * NH + h) * HD + d] += p[j] * qkv[at(b, j, vs, d)];
            dot += dout[((b * S + i) * NH + h) * HD + d] * qkv[at(b, j, vs, d)];
            r.dqkv[at(b, j, vs, d)] += p[j] * dout[((b * S + i) * NH + h) * HD + d];
          }
          dp[j] = dot;
          pdp += p[j] * dot;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double ds = p[j] * (dp[j] - pdp) * scale;
          for (int64_t d = 0; d < HD; ++d) {
            r.dqkv[at(b, i, h, d)] += ds * qkv[at(b, j, ks, d)];
            r.dqkv[at(b, j, ks, d)] += ds * qkv[at(b, i, h, d)];
          }
        }
      }
    }
  return r;
}

TEST(AttentionCoreTest, ForwardAndBackwardMatchCausalAttention) {
  const AttentionCoreShape s{2, 64, 4, 2, 16, 2};
  const int64_t T = s.batch * s.seq, q = T * s.heads * s.head_dim;
  const int64_t kv = T * s.kv_heads * s.head_dim, scores = s.batch * s.heads * s.seq * s.seq;
  const std::vector<float> qkv = testing::RandomBf16Values(q + 2 * kv, 7, 1.0f);
  const std::vector<float> dout = testing::RandomBf16Values(q, 8, 1.0f);
  const Reference ref = CausalAttention(s, qkv, dout);

  DeviceArray<bf16> d_qkv(testing::ToBf16(qkv)), d_out(testing::ToBf16(dout));
  DeviceArray<bf16> dq(q), dk(kv), dv(kv), probs(scores), o_heads(q), att_out(q);
  DeviceArray<bf16> d_o(q), dprobs(scores), dqkv_heads(q + 2 * kv), dqkv(q + 2 * kv);
  att_out.Poison();
  dqkv.Poison();
  DeviceArray<char> ws(Matmul::kWorkspaceBytes);
  auto mm = Matmul::Create(ws.get(), Matmul::kWorkspaceBytes);
  ASSERT_TRUE(mm.ok()) << mm.status().ToString();
  const AttentionCore core(mm->get(), s, nullptr, nullptr, nullptr);
  ASSERT_TRUE(core.Forward(d_qkv.get(), dq.get(), dk.get(), dv.get(), probs.get(), o_heads.get(),
                           att_out.get())
                  .ok());
  const AttentionCoreScratch scratch{d_o.get(), dprobs.get(), dqkv_heads.get()};
  ASSERT_TRUE(
      core.Backward(d_out.get(), dq.get(), dk.get(), dv.get(), probs.get(), scratch, dqkv.get())
          .ok());
  // bf16 probabilities and outputs: kBf16Tol; the backward goes through the
  // bf16 probabilities and their bf16 gradient twice, so twice that.
  EXPECT_LT(testing::RelError(testing::FromBf16(att_out.Download()), ref.out), testing::kBf16Tol);
  EXPECT_LT(testing::RelError(testing::FromBf16(dqkv.Download()), ref.dqkv),
            2 * testing::kBf16Tol);

  // Selective recompute's Probs reproduces the stored probabilities bit for bit.
  const std::vector<bf16> stored = probs.Download();
  probs.Poison();
  ASSERT_TRUE(core.Probs(dq.get(), dk.get(), probs.get()).ok());
  const std::vector<bf16> again = probs.Download();
  // Only each query block's key range is written; compare those rows' ranges.
  const int64_t S = s.seq, Sb = S / s.blocks;
  int64_t differ = 0;
  for (int64_t r = 0; r < s.batch * s.heads * S; ++r) {
    const int64_t pos = (r / (s.heads / s.kv_heads)) % S, end = (pos / Sb + 1) * Sb;
    differ += std::memcmp(&stored[r * S], &again[r * S], end * sizeof(bf16)) != 0;
  }
  EXPECT_EQ(differ, 0);
}

}  // namespace
}  // namespace p3d
