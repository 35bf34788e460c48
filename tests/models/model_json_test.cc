// p3d's own model JSON format: round trip, user files, typo detection.
#include "models/model_json.h"

#include <gtest/gtest.h>

#include <tuple>

#include "models/model_file.h"
#include "models/zoo.h"

namespace p3d {
namespace {

std::string Data(const std::string& rel) { return std::string(P3D_MODELS_TEST_DATA) + "/" + rel; }

TEST(ModelJsonTest, RoundTripsEveryZooModel) {
  for (const ZooEntry& e : Zoo()) {
    nlohmann::json j = ModelToJson(e.model);
    EXPECT_EQ(j["parameters"].get<int64_t>(), e.model.TotalParams());
    StatusOr<ModelSpec> back = ModelFromJson(j, "roundtrip", "");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(ModelToJson(*back), j) << e.model.name;
  }
}

TEST(ModelJsonTest, UserFileWithDefaults) {
  StatusOr<ModelSpec> m = ResolveModel(Data("p3d/my-model.json"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "my-model");
  EXPECT_EQ(m->kv_heads, 4);
  EXPECT_FALSE(m->tie_embeddings);  // llama default
  EXPECT_EQ(m->max_positions, 4096);
  // 2*V*H + L*(2*H^2 + 2*H*KV*HD + 3*H*F + 2*H) + H, written out by hand.
  const int64_t H = 2048, L = 24, F = 5632, KV = 4, HD = 128, V = 32000;
  EXPECT_EQ(m->TotalParams(),
            2 * V * H + L * (2 * H * H + 2 * H * KV * HD + 3 * H * F + 2 * H) + H);
}

TEST(ModelJsonTest, TypoIsAnErrorNamingTheField) {
  StatusOr<ModelSpec> m = LoadModelFile(Data("p3d/typo.json"));
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("'hiden'"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("typo.json"), std::string::npos);
}

TEST(ModelJsonTest, StatedParametersMustMatchShape) {
  nlohmann::json j = ModelToJson(*ZooModel("gpt2-small"));
  j["parameters"] = 124000000;
  StatusOr<ModelSpec> m = ModelFromJson(j, "file.json", "");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("'parameters'"), std::string::npos);
}

TEST(ModelJsonTest, BadArchAndTypesNameTheField) {
  nlohmann::json j = ModelToJson(*ZooModel("llama-2-7b"));
  j.erase("parameters");
  j.erase("active_parameters");
  nlohmann::json bad_arch = j, bad_layers = j, bad_tie = j;
  bad_arch["arch"] = "bert";
  bad_layers["layers"] = "32";
  bad_tie["tie_embeddings"] = 1;
  for (const auto& [obj, field] : {std::pair{bad_arch, "'arch'"}, std::pair{bad_layers, "'layers'"},
                                   std::pair{bad_tie, "'tie_embeddings'"}}) {
    StatusOr<ModelSpec> m = ModelFromJson(obj, "m.json", "");
    ASSERT_FALSE(m.ok()) << field;
    EXPECT_NE(m.status().message().find(field), std::string::npos) << m.status().message();
  }
}

// The MoE and attention-variant fields: each inconsistent combination is an
// error naming the field.
TEST(ModelJsonTest, MoeAndAttentionVariantsNameTheField) {
  nlohmann::json dense = ModelToJson(*ZooModel("llama-2-7b"));
  nlohmann::json moe = ModelToJson(*ZooModel("deepseek-v3"));
  for (nlohmann::json* j : {&dense, &moe}) {
    j->erase("parameters");
    j->erase("active_parameters");
  }
  const std::tuple<nlohmann::json, const char*, nlohmann::json, const char*> kCases[] = {
      {dense, "shared_experts", 1, "'shared_experts' applies to MoE models only"},
      {dense, "router_bias", true, "'router_bias' applies to MoE models only"},
      {dense, "full_attention_every", 2, "'full_attention_every' needs 'sliding_window'"},
      {dense, "qk_rope_head_dim", 64, "MLA fields"},
      {dense, "head_dim", -1, "'head_dim'"},
      {moe, "dense_layers", 61, "'dense_layers' is 61"},
      {moe, "v_head_dim", 0, "'v_head_dim' > 0"},
      {moe, "kv_heads", 8, "kv_heads 8 must equal heads 128"},
      {moe, "qk_norm", true, "MLA attention takes no"},
      {dense, "expert_groups", 8, "'expert_groups' applies to MoE models only"},
      {moe, "groups_per_token", 0, "set together or not at all"},
      {moe, "expert_groups", 7, "do not split into expert_groups 7"},
      {moe, "groups_per_token", 9, "groups_per_token 9 must be at most expert_groups 8"},
      {moe, "expert_groups", 256, "its groups must hold experts_per_token 8"},
  };
  for (const auto& [base, field, value, needle] : kCases) {
    nlohmann::json obj = base;
    obj[field] = value;
    StatusOr<ModelSpec> m = ModelFromJson(obj, "m.json", "");
    ASSERT_FALSE(m.ok()) << field;
    EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status().message();
  }
}

}  // namespace
}  // namespace p3d
