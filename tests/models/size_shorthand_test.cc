// Size shorthands: standard mappings, generated shapes and bad sizes.
#include "models/size_shorthand.h"

#include <gtest/gtest.h>

#include <cmath>

#include "models/zoo.h"

namespace p3d {
namespace {

TEST(ParseSizeTest, Suffixes) {
  EXPECT_EQ(*ParseSize("7B"), 7'000'000'000);
  EXPECT_EQ(*ParseSize("8b"), 8'000'000'000);
  EXPECT_EQ(*ParseSize("1.3B"), 1'300'000'000);
  EXPECT_EQ(*ParseSize("500M"), 500'000'000);
  EXPECT_EQ(*ParseSize("2T"), 2'000'000'000'000);
  EXPECT_EQ(*ParseSize("100k"), 100'000);
}

TEST(ParseSizeTest, BadSizesNameTheArgument) {
  for (const char* arg : {"0B", "-5B", "abcB", "1e30B", "7.5.1B", "B", "nanB"}) {
    StatusOr<int64_t> s = ParseSize(arg);
    ASSERT_FALSE(s.ok()) << arg;
    EXPECT_NE(s.status().message().find(std::string("'") + arg + "'"), std::string::npos)
        << s.status().message();
  }
}

// The documented standard shapes (docs/models.md).
TEST(ResolveModelTest, StandardShorthands) {
  const std::pair<const char*, const char*> kMap[] = {
      {"7B", "llama-2-7b"},      {"13B", "llama-2-13b"},     {"70B", "llama-2-70b"},
      {"8b", "llama-3-8b"},      {"405B", "llama-3.1-405b"}, {"175B", "gpt3-175b"},
      {"1.3B", "gpt-1.3b"},      {"2.7B", "gpt-2.7b"},       {"124M", "gpt2-small"},
      {"1.5B", "gpt2-xl"},       {"72B", "qwen2-72b"},       {"22B", "megatron-22b"},
      {"530B", "megatron-530b"}, {"1T", "megatron-1t"},      {"7000M", "llama-2-7b"},
  };
  for (const auto& [arg, id] : kMap) {
    StatusOr<ModelSpec> m = ResolveModel(arg);
    ASSERT_TRUE(m.ok()) << arg << ": " << m.status().ToString();
    EXPECT_EQ(m->name, id) << arg;
  }
}

TEST(ResolveModelTest, OtherSizesAreGeneratedAndNamedSo) {
  StatusOr<ModelSpec> m = ResolveModel("30B");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "llama-style-30b");
  EXPECT_EQ(m->arch, Arch::kLlama);
  EXPECT_EQ(m->kv_heads, 8);
  EXPECT_EQ(m->head_dim(), 128);
}

// The generation rule's contract (size_shorthand.h): every size in the
// supported range lands within 5% of the request (the brief's tolerance),
// yields a valid shape, and keeps the documented structure. Sizes are swept
// log-uniformly, 400 points from 50M to 100T.
TEST(GenerateLlamaStyleTest, SweepWithinFivePercent) {
  double lo = std::log(static_cast<double>(kMinGeneratedParams));
  double hi = std::log(static_cast<double>(kMaxGeneratedParams));
  double worst = 0;
  for (int i = 0; i <= 400; ++i) {
    int64_t params = std::llround(std::exp(lo + (hi - lo) * i / 400));
    StatusOr<ModelSpec> m = GenerateLlamaStyle(params, "sweep");
    ASSERT_TRUE(m.ok()) << params << ": " << m.status().ToString();
    ASSERT_TRUE(Validate(*m).ok()) << params;
    double err = std::fabs(static_cast<double>(m->TotalParams()) / params - 1);
    worst = std::max(worst, err);
    EXPECT_LE(err, 0.05) << params;
    EXPECT_EQ(m->hidden % 128, 0) << params;
    EXPECT_EQ(m->ffn % 256, 0) << params;
    EXPECT_EQ(m->vocab, 32000) << params;
    EXPECT_EQ(m->kv_heads, m->heads >= 32 ? 8 : m->heads) << params;
    if (m->heads >= 32) {
      EXPECT_EQ(m->heads % 8, 0) << params;
    }
    if (params >= 1'000'000'000) {
      EXPECT_LE(err, 0.02) << params;
    }
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
}

TEST(GenerateLlamaStyleTest, RequestedExamplesWithinFivePercent) {
  for (const char* arg : {"30B", "500M", "2T", "3B", "100B"}) {
    StatusOr<ModelSpec> m = ResolveModel(arg);
    ASSERT_TRUE(m.ok()) << arg << ": " << m.status().ToString();
    EXPECT_NEAR(m->TotalParams() / static_cast<double>(*ParseSize(arg)), 1.0, 0.05) << arg;
  }
}

TEST(ResolveModelTest, BadSizesAreErrorsNamingTheArgument) {
  for (const char* arg : {"0B", "-5B", "abcB", "1e30B", "10M", "200T"}) {
    StatusOr<ModelSpec> m = ResolveModel(arg);
    ASSERT_FALSE(m.ok()) << arg;
    EXPECT_NE(m.status().message().find(arg), std::string::npos) << m.status().message();
  }
}

TEST(ResolveModelTest, UnknownNamePointsToListModels) {
  StatusOr<ModelSpec> m = ResolveModel("mistrall-7b");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("mistral-7b"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("--list-models"), std::string::npos);
}

}  // namespace
}  // namespace p3d
