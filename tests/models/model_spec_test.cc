#include "models/model_spec.h"

#include <gtest/gtest.h>

namespace p3d {
namespace {

// GPT-2 small, from its public config.json: published.md section 4.
TEST(ModelSpecTest, Gpt2SmallParameterCount) {
  ModelSpec m{.name = "gpt2", .arch = Arch::kGpt2, .layers = 12, .hidden = 768, .ffn = 3072,
              .heads = 12, .kv_heads = 12, .vocab = 50257, .max_positions = 1024,
              .tie_embeddings = true};
  EXPECT_EQ(m.TotalParams(), 124439808);
}

// Llama-2-7B: published.md section 4.
TEST(ModelSpecTest, Llama2_7bParameterCount) {
  ModelSpec m{.name = "llama-2-7b", .arch = Arch::kLlama, .layers = 32, .hidden = 4096,
              .ffn = 11008, .heads = 32, .kv_heads = 32, .vocab = 32000, .max_positions = 4096};
  EXPECT_EQ(m.TotalParams(), 6738415616);
}

TEST(ModelSpecTest, ValidateNamesField) {
  ModelSpec m{.name = "bad", .arch = Arch::kLlama, .layers = 0, .hidden = 64, .ffn = 128,
              .heads = 4, .kv_heads = 4, .vocab = 100};
  Status s = Validate(m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("layers"), std::string::npos);
}

}  // namespace
}  // namespace p3d
