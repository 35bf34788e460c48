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
#include "tests/executor/attention_reference.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::CausalAttention;
using testing::DeviceArray;
using testing::Reference;

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
