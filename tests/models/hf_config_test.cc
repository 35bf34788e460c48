// HuggingFace config.json import: fixture configs written in the layouts of
// transformers 4.x and 5.x (tests/models/data/hf), and malformed inputs.
#include "models/hf_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "models/model_file.h"
#include "models/zoo.h"

namespace p3d {
namespace {

std::string Data(const std::string& rel) { return std::string(P3D_MODELS_TEST_DATA) + "/" + rel; }

ModelSpec Load(const std::string& rel) {
  StatusOr<ModelSpec> m = LoadHfConfig(Data(rel));
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? *m : ModelSpec{};
}

// Exact counts from published.md section 4.
TEST(HfConfigTest, Llama2_7bTransformers4) {
  ModelSpec m = Load("hf/Llama-2-7b-hf/config.json");
  EXPECT_EQ(m.name, "Llama-2-7b-hf");
  EXPECT_EQ(m.TotalParams(), 6738415616);
  EXPECT_EQ(m.max_positions, 4096);
  EXPECT_FALSE(m.tie_embeddings);
}

// transformers 5 layout: "dtype", rope_parameters, explicit head_dim.
TEST(HfConfigTest, Llama3_8bTransformers5Layout) {
  ModelSpec m = Load("hf/Meta-Llama-3-8B-tf5/config.json");
  EXPECT_EQ(m.TotalParams(), 8030261248);
  EXPECT_EQ(m.kv_heads, 8);
}

// A multimodal wrapper: the text model under "text_config" is imported.
TEST(HfConfigTest, TextConfigNesting) {
  EXPECT_EQ(Load("hf/llava-llama-3-8b/config.json").TotalParams(), 8030261248);
}

TEST(HfConfigTest, Mistral7b) {
  EXPECT_EQ(Load("hf/Mistral-7B-v0.1/config.json").TotalParams(), 7241732096);
}

TEST(HfConfigTest, Qwen2_72bHasQkvBias) {
  ModelSpec m = Load("hf/Qwen2-72B/config.json");
  EXPECT_TRUE(m.qkv_bias);
  EXPECT_EQ(m.TotalParams(), 72706203648);
}

TEST(HfConfigTest, Gpt2NullInnerAndTied) {
  ModelSpec m = Load("hf/gpt2/config.json");
  EXPECT_EQ(m.arch, Arch::kGpt2);
  EXPECT_EQ(m.ffn, 3072);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.TotalParams(), 124439808);
}

// BLOOM-176B: ALiBi, embedding LayerNorm, tied head; the zoo's count.
TEST(HfConfigTest, Bloom176bMatchesZoo) {
  ModelSpec m = Load("hf/bloom/config.json");
  EXPECT_EQ(m.arch, Arch::kGpt2);
  EXPECT_TRUE(m.alibi);
  EXPECT_TRUE(m.embedding_norm);
  EXPECT_EQ(m.ffn, 4 * 14336);
  EXPECT_EQ(m.max_positions, 2048);
  EXPECT_EQ(m.TotalParams(), 176247271424);
  EXPECT_EQ(m.TotalParams(), ZooModel("bloom-176b")->TotalParams());
  // bloom-560m's layout: n_embed and num_attention_heads (transformers' aliases).
  StatusOr<ModelSpec> small = ParseHfConfig(
      nlohmann::json{{"model_type", "bloom"}, {"n_embed", 1024}, {"n_layer", 24}, {"num_attention_heads", 16},
                     {"vocab_size", 250880}},
      "bloom-560m");
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  // 24 * (12 H^2 + 13 H) + V H + 2H + 2H = 559,214,592 (the model card's 559M).
  EXPECT_EQ(small->TotalParams(), 559214592);
}

TEST(HfConfigTest, MixtralExperts) {
  ModelSpec m = Load("hf/Mixtral-8x7B-v0.1/config.json");
  EXPECT_EQ(m.experts, 8);
  EXPECT_EQ(m.experts_per_token, 2);
  EXPECT_EQ(m.TotalParams(), 46702792704);
}

// The imported shapes equal the zoo's (same source config).
TEST(HfConfigTest, MatchesZoo) {
  const std::pair<const char*, const char*> kPairs[] = {
      {"hf/Llama-2-7b-hf/config.json", "llama-2-7b"},
      {"hf/Qwen2-72B/config.json", "qwen2-72b"},
      {"hf/Mixtral-8x7B-v0.1/config.json", "mixtral-8x7b"},
      {"hf/Qwen3-30B-A3B/config.json", "qwen3-30b-a3b"},
      {"hf/Qwen3-235B-A22B/config.json", "qwen3-235b-a22b"},
      {"hf/DeepSeek-V3/config.json", "deepseek-v3"},
      {"hf/gpt-oss-120b/config.json", "gpt-oss-120b"}};
  for (const auto& [file, id] : kPairs) {
    ModelSpec a = Load(file), b = *ZooModel(id);
    EXPECT_EQ(a.TotalParams(), b.TotalParams()) << id;
    EXPECT_EQ(a.expert_groups, b.expert_groups) << id;  // DeepSeek-V3: n_group 8, topk_group 4
    EXPECT_EQ(a.groups_per_token, b.groups_per_token) << id;
    EXPECT_EQ(a.ActiveParams(), b.ActiveParams()) << id;
    EXPECT_EQ(a.max_positions, b.max_positions) << id;
    for (int64_t i = 0; i < a.layers; ++i) EXPECT_EQ(a.KindOfLayer(i).index(), b.KindOfLayer(i).index()) << id;
  }
}

TEST(HfConfigTest, ResolveModelAcceptsConfigPath) {
  StatusOr<ModelSpec> m = ResolveModel(Data("hf/Mistral-7B-v0.1/config.json"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "Mistral-7B-v0.1");
}

// Each bad input is a non-OK status naming the file and the field at fault.
TEST(HfConfigTest, BadInputsNameFileAndField) {
  const std::pair<const char*, const char*> kCases[] = {
      {"bad/truncated.json", "not valid JSON"},
      {"bad/missing_layers.json", "'num_hidden_layers'"},
      {"bad/string_hidden.json", "'hidden_size'"},
      {"bad/negative_heads.json", "'num_attention_heads'"},
      {"bad/unknown_type.json", "'model_type'"},
      {"bad/moe_stride.json", "'decoder_sparse_step'"},
      {"bad/layer_types.json", "'layer_types'"},
      {"bad/mla_missing.json", "'kv_lora_rank'"},
      {"bad/kv_not_dividing.json", "kv_heads"},
  };
  for (const auto& [file, needle] : kCases) {
    StatusOr<ModelSpec> m = LoadHfConfig(Data(file));
    ASSERT_FALSE(m.ok()) << file;
    const std::string& msg = m.status().message();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(HfConfigTest, UnknownModelTypeListsSupported) {
  StatusOr<ModelSpec> m = LoadHfConfig(Data("bad/unknown_type.json"));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("bert"), std::string::npos);
  EXPECT_NE(m.status().message().find(SupportedHfModelTypes()), std::string::npos);
}

// A missing input file is bad input (exit 2 in every tool), naming the file.
TEST(HfConfigTest, MissingFileIsBadInput) {
  StatusOr<ModelSpec> m = LoadHfConfig(Data("hf/no-such-model/config.json"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(m.status().message().find("no-such-model"), std::string::npos);
}

TEST(HfConfigTest, InMemoryErrorsNameTheConfig) {
  nlohmann::json j = {{"model_type", "mixtral"},  {"hidden_size", 64},
                      {"num_hidden_layers", 2},   {"num_attention_heads", 4},
                      {"intermediate_size", 128}, {"vocab_size", 100}};
  StatusOr<ModelSpec> m = ParseHfConfig(j, "toy");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("'toy'"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("'num_local_experts'"), std::string::npos);
}

// A HuggingFace model folder is read through its config.json; a config.json
// without model_type is named as such, not as a p3d file with unknown fields.
TEST(HfConfigTest, ModelFoldersAndConfigsWithoutModelType) {
  auto folder = LoadModelFile(Data("hf/Llama-2-7b-hf"));
  ASSERT_TRUE(folder.ok()) << folder.status().ToString();
  EXPECT_EQ(folder->name, "Llama-2-7b-hf");
  auto empty = LoadModelFile(Data("bad"));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("without a config.json"), std::string::npos);
  const std::string path = ::testing::TempDir() + "/no_model_type_config.json";
  std::ofstream(path) << R"({"hidden_size": 4096, "num_hidden_layers": 32})";
  auto m = LoadModelFile(path);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("no 'model_type' field"), std::string::npos) << m.status().message();
}

}  // namespace
}  // namespace p3d
