// FusedAttention (executor/fused_attention.h) against the float64 CPU causal
// attention (tests/executor/attention_reference.h): output, saved row
// log-sum-exp, and dq / dk / dv from an output gradient, for every head dim
// the executor runs (64, 80, 96, 128) and GQA group sizes G = 1, 2, 4; then
// against the unfused AttentionCore on an executor shape with rotary.
//
// Tolerances on ||out - ref|| / ||ref|| (inputs are exact bf16 values):
//   out            1e-2  (kBf16Tol: bf16 output, bf16 probabilities into P V)
//   stats (fp32)   1e-4  (fp32 scores, exp/log of bf16 inputs)
//   dq, dk, dv     2e-2  (two bf16 roundings of P and dS on the way, as the
//                        unfused core's test allows)
#include <cudnn.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "executor/fused_attention.h"
#include "executor/kernels/heads.h"
#include "tests/executor/attention_reference.h"
#include "tests/executor/gpu_test_util.h"

namespace p3d {
namespace {

using testing::DeviceArray;

constexpr double kStatsTol = 1e-4;

// Elements [begin, begin + width) of every row of a [rows, row] matrix.
template <typename T>
std::vector<T> Columns(const std::vector<T>& m, int64_t row, int64_t begin, int64_t width) {
  std::vector<T> out;
  for (size_t r = 0; r < m.size() / row; ++r)
    out.insert(out.end(), m.begin() + r * row + begin, m.begin() + r * row + begin + width);
  return out;
}

struct Errors {
  double out = 0, stats = 0, dq = 0, dk = 0, dv = 0;
};

// Runs forward and backward on fresh random inputs and measures each output.
Errors RunAgainstReference(const AttentionCoreShape& s, uint32_t seed) {
  const int64_t T = s.batch * s.seq, NH = s.heads, KV = s.kv_heads, HD = s.head_dim;
  const int64_t width = (NH + 2 * KV) * HD;
  const std::vector<float> qkv = testing::RandomBf16Values(T * width, seed, 1.5f);
  const std::vector<float> dout = testing::RandomBf16Values(T * NH * HD, seed + 1, 1.0f);
  const testing::Reference ref = testing::CausalAttention(s, qkv, dout);

  auto fa = FusedAttention::Create(s, nullptr);
  EXPECT_TRUE(fa.ok()) << fa.status().ToString();
  if (!fa.ok()) return {1e9, 1e9, 1e9, 1e9, 1e9};
  DeviceArray<bf16> d_qkv(testing::ToBf16(qkv)), d_dout(testing::ToBf16(dout));
  DeviceArray<bf16> out(T * NH * HD), dqkv(T * width);
  DeviceArray<float> stats(s.batch * NH * s.seq);
  DeviceArray<char> ws(std::max<int64_t>((*fa)->workspace_bytes(), 1));
  out.Poison();
  stats.Poison();
  dqkv.Poison();
  Status st = (*fa)->Forward(d_qkv.get(), out.get(), stats.get(), ws.get());
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = (*fa)->Backward(d_qkv.get(), out.get(), d_dout.get(), stats.get(), dqkv.get(), ws.get());
  EXPECT_TRUE(st.ok()) << st.ToString();

  const std::vector<float> g = testing::FromBf16(dqkv.Download());
  const std::vector<double>& r = ref.dqkv;
  Errors e;
  e.out = testing::RelError(testing::FromBf16(out.Download()), ref.out);
  e.stats = testing::RelError(stats.Download(), ref.lse);
  e.dq = testing::RelError(Columns(g, width, 0, NH * HD), Columns(r, width, 0, NH * HD));
  e.dk =
      testing::RelError(Columns(g, width, NH * HD, KV * HD), Columns(r, width, NH * HD, KV * HD));
  e.dv = testing::RelError(Columns(g, width, (NH + KV) * HD, KV * HD),
                           Columns(r, width, (NH + KV) * HD, KV * HD));
  return e;
}

void ExpectWithinTolerance(const Errors& e, const std::string& what) {
  EXPECT_LT(e.out, testing::kBf16Tol) << what;
  EXPECT_LT(e.stats, kStatsTol) << what;
  EXPECT_LT(e.dq, 2 * testing::kBf16Tol) << what;
  EXPECT_LT(e.dk, 2 * testing::kBf16Tol) << what;
  EXPECT_LT(e.dv, 2 * testing::kBf16Tol) << what;
  std::printf("%s: rel err out %.2e stats %.2e dq %.2e dk %.2e dv %.2e\n", what.c_str(), e.out,
              e.stats, e.dq, e.dk, e.dv);
}

class FusedAttentionHeadDimTest : public ::testing::TestWithParam<std::tuple<int, int>> {};

// B2, S128, KV2, NH = 2 G: every head dim and group size.
TEST_P(FusedAttentionHeadDimTest, MatchesFloat64Reference) {
  const auto [hd, groups] = GetParam();
  const AttentionCoreShape s{2, 128, 2 * groups, 2, hd, 1};
  ExpectWithinTolerance(RunAgainstReference(s, 100 + hd + groups),
                        "HD" + std::to_string(hd) + " G" + std::to_string(groups));
}

INSTANTIATE_TEST_SUITE_P(HeadDimsAndGroups, FusedAttentionHeadDimTest,
                         ::testing::Combine(::testing::Values(64, 80, 96, 128),
                                            ::testing::Values(1, 2, 4)));

// Longer sequences: several of the kernel's key/query tiles, the causal
// diagonal crossing them.
TEST(FusedAttentionTest, LongerSequences) {
  ExpectWithinTolerance(RunAgainstReference({1, 512, 4, 1, 64, 1}, 5), "S512 NH4 KV1 HD64");
  ExpectWithinTolerance(RunAgainstReference({1, 384, 2, 2, 128, 1}, 6), "S384 NH2 KV2 HD128");
}

// A sequence that is a multiple of 64 but not of 128: refused with the rule
// on cuDNN <= 9.15, computed correctly on later releases.
TEST(FusedAttentionTest, SequenceOf192FollowsTheRule) {
  const AttentionCoreShape s{1, 192, 2, 1, 64, 1};
  if (cudnnGetVersion() <= 91500) {
    const Status st = FusedAttention::CheckShape(s);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.ToString().find("multiple of 128"), std::string::npos) << st.ToString();
  } else {
    ExpectWithinTolerance(RunAgainstReference(s, 7), "S192");
  }
}

TEST(FusedAttentionTest, RefusesShapesOutsideItsRules) {
  auto message = [](const AttentionCoreShape& s) {
    return FusedAttention::CheckShape(s).ToString();
  };
  EXPECT_NE(message({1, 100, 2, 1, 64, 1}).find("seq = 100 must be a multiple of"),
            std::string::npos);
  EXPECT_NE(message({1, 128, 3, 2, 64, 1}).find("multiple of KV"), std::string::npos);
  EXPECT_NE(message({1, 128, 2, 1, 60, 1}).find("head_dim = 60"), std::string::npos);
  EXPECT_NE(message({1, 128, 2, 1, 256, 1}).find("at most 128"), std::string::npos);
}

// The executor's two attention cores agree on a Llama-style layer (rotary,
// GQA): the fused path is rotary in place, FusedAttention, inverse rotary of
// the gradient; the unfused path is AttentionCore with its rotary tables.
TEST(FusedAttentionTest, MatchesUnfusedAttentionCoreWithRotary) {
  const AttentionCoreShape s{2, 256, 8, 2, 64, 4};
  const int64_t T = s.batch * s.seq, NH = s.heads, KV = s.kv_heads, HD = s.head_dim;
  const int64_t q = T * NH * HD, kv = T * KV * HD, width = (NH + 2 * KV) * HD;
  const std::vector<float> qkv = testing::RandomBf16Values(T * width, 21, 1.5f);
  const std::vector<float> dout = testing::RandomBf16Values(q, 22, 1.0f);
  std::vector<float> cos_t, sin_t;
  BuildRotaryTables(s.seq, HD, 10000.0, &cos_t, &sin_t);
  DeviceArray<float> d_cos(cos_t), d_sin(sin_t);

  // Unfused.
  DeviceArray<bf16> d_qkv(testing::ToBf16(qkv)), d_dout(testing::ToBf16(dout));
  DeviceArray<bf16> dq(q), dk(kv), dv(kv), probs(s.batch * NH * s.seq * s.seq), o_heads(q);
  DeviceArray<bf16> att_ref(q), d_o(q), dprobs(s.batch * NH * s.seq * s.seq);
  DeviceArray<bf16> dqkv_heads(q + 2 * kv), dqkv_ref(T * width);
  DeviceArray<char> mm_ws(Matmul::kWorkspaceBytes);
  auto mm = Matmul::Create(mm_ws.get(), Matmul::kWorkspaceBytes);
  ASSERT_TRUE(mm.ok()) << mm.status().ToString();
  const AttentionCore core(mm->get(), s, d_cos.get(), d_sin.get(), nullptr);
  ASSERT_TRUE(core.Forward(d_qkv.get(), dq.get(), dk.get(), dv.get(), probs.get(), o_heads.get(),
                           att_ref.get())
                  .ok());
  const AttentionCoreScratch scratch{d_o.get(), dprobs.get(), dqkv_heads.get()};
  ASSERT_TRUE(core.Backward(d_dout.get(), dq.get(), dk.get(), dv.get(), probs.get(), scratch,
                            dqkv_ref.get())
                  .ok());

  // Fused.
  auto fa = FusedAttention::Create(s, nullptr);
  ASSERT_TRUE(fa.ok()) << fa.status().ToString();
  DeviceArray<bf16> att(q), dqkv(T * width);
  DeviceArray<float> stats(s.batch * NH * s.seq);
  DeviceArray<char> ws((*fa)->workspace_bytes());
  att.Poison();
  dqkv.Poison();
  const HeadShape hs{s.batch, s.seq, NH, KV, HD};
  ASSERT_TRUE(RotateQkvInPlace(d_qkv.get(), hs, d_cos.get(), d_sin.get(), false, nullptr).ok());
  ASSERT_TRUE((*fa)->Forward(d_qkv.get(), att.get(), stats.get(), ws.get()).ok());
  ASSERT_TRUE(
      (*fa)
          ->Backward(d_qkv.get(), att.get(), d_dout.get(), stats.get(), dqkv.get(), ws.get())
          .ok());
  ASSERT_TRUE(RotateQkvInPlace(dqkv.get(), hs, d_cos.get(), d_sin.get(), true, nullptr).ok());

  // Both are bf16 computations of the same function: compare each to the
  // other within the sum of their tolerances.
  const std::vector<float> a_ref = testing::FromBf16(att_ref.Download());
  const std::vector<float> g_ref = testing::FromBf16(dqkv_ref.Download());
  const double e_out =
      testing::RelError(testing::FromBf16(att.Download()), testing::ToDouble(a_ref));
  const double e_grad =
      testing::RelError(testing::FromBf16(dqkv.Download()), testing::ToDouble(g_ref));
  std::printf("fused vs unfused (rotary, G4): rel diff out %.2e dqkv %.2e\n", e_out, e_grad);
  EXPECT_LT(e_out, 2 * testing::kBf16Tol);
  EXPECT_LT(e_grad, 4 * testing::kBf16Tol);
}

}  // namespace
}  // namespace p3d
