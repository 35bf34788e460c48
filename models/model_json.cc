#include "models/model_json.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <string_view>

#include "common/json_fields.h"

namespace p3d {
namespace {

// The shape fields, and the other fields a p3d model object may carry.
constexpr std::array<std::string_view, 32> kShapeFields = {
    "arch",     "layers",  "hidden",            "ffn",   "heads",         "kv_heads",       "vocab",
    "max_positions", "tie_embeddings", "qkv_bias", "experts", "experts_per_token", "alibi", "embedding_norm",
    "head_dim", "qk_norm", "attention_bias", "attention_sinks", "sliding_window", "full_attention_every",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
    "moe_ffn", "shared_experts", "dense_layers", "router_bias", "expert_bias", "expert_groups",
    "groups_per_token"};

// The optional integer fields (0 = absent) and flags of the attention and MoE
// variants (docs/models.md), with their ModelSpec members.
struct IntField {
  const char* key;
  int64_t ModelSpec::*member;
};
constexpr IntField kVariantInts[] = {
    {"head_dim", &ModelSpec::head_dim_override},   {"sliding_window", &ModelSpec::sliding_window},
    {"full_attention_every", &ModelSpec::full_attention_every},
    {"q_lora_rank", &ModelSpec::q_lora_rank},       {"kv_lora_rank", &ModelSpec::kv_lora_rank},
    {"qk_nope_head_dim", &ModelSpec::qk_nope_head_dim}, {"qk_rope_head_dim", &ModelSpec::qk_rope_head_dim},
    {"v_head_dim", &ModelSpec::v_head_dim},         {"moe_ffn", &ModelSpec::moe_ffn},
    {"shared_experts", &ModelSpec::shared_experts}, {"dense_layers", &ModelSpec::dense_layers},
    {"expert_groups", &ModelSpec::expert_groups},   {"groups_per_token", &ModelSpec::groups_per_token}};
struct BoolField {
  const char* key;
  bool ModelSpec::*member;
};
constexpr BoolField kVariantBools[] = {{"qk_norm", &ModelSpec::qk_norm},
                                       {"attention_bias", &ModelSpec::attention_bias},
                                       {"attention_sinks", &ModelSpec::attention_sinks},
                                       {"router_bias", &ModelSpec::router_bias},
                                       {"expert_bias", &ModelSpec::expert_bias}};
constexpr std::array<std::string_view, 8> kOtherFields = {
    "p3d_model", "name", "id", "parameters", "active_parameters", "source", "shorthand", "comment"};

Status CheckKnownFields(const nlohmann::json& object, const std::string& where) {
  auto known = [](const std::string& key) {
    for (std::string_view k : kShapeFields)
      if (k == key) return true;
    for (std::string_view k : kOtherFields)
      if (k == key) return true;
    return false;
  };
  for (const auto& [key, value] : object.items()) {
    if (!known(key))
      return Status::InvalidArgument(
          fmt::format("{}: unknown field '{}' (p3d model fields: {}; see docs/models.md)", where,
                      key, fmt::join(kShapeFields, ", ")));
  }
  return Status::Ok();
}

// A stated count ("parameters") must match the count the shape gives.
Status CheckStatedCount(const JsonFields& f, const char* key, int64_t derived) {
  if (!f.Has(key)) return Status::Ok();
  P3D_ASSIGN_OR_RETURN(int64_t stated, f.PositiveInt(key));
  if (stated != derived)
    return f.Error(key, fmt::format("says {} but the shape gives {}; fix the shape or drop the "
                                    "field (it is derived)",
                                    stated, derived));
  return Status::Ok();
}

}  // namespace

StatusOr<Arch> ArchFromName(const std::string& name, const std::string& where) {
  if (name == "gpt2") return Arch::kGpt2;
  if (name == "llama") return Arch::kLlama;
  return Status::InvalidArgument(
      fmt::format("{}: field 'arch' must be \"gpt2\" or \"llama\", got \"{}\"", where, name));
}

nlohmann::json ModelToJson(const ModelSpec& m) {
  nlohmann::json out{{"p3d_model", 1},
                        {"name", m.name},
                        {"arch", ArchName(m.arch)},
                        {"layers", m.layers},
                        {"hidden", m.hidden},
                        {"ffn", m.ffn},
                        {"heads", m.heads},
                        {"kv_heads", m.kv_heads},
                        {"vocab", m.vocab},
                        {"max_positions", m.max_positions},
                        {"tie_embeddings", m.tie_embeddings},
                        {"qkv_bias", m.qkv_bias},
                        {"experts", m.experts},
                        {"experts_per_token", m.experts_per_token},
                        {"alibi", m.alibi},
                        {"embedding_norm", m.embedding_norm},
                        {"parameters", m.TotalParams()},
                        {"active_parameters", m.ActiveParams()}};
  // The variants only where set: a dense GQA model's object stays as it was.
  for (const IntField& f : kVariantInts)
    if (m.*f.member != 0) out[f.key] = m.*f.member;
  for (const BoolField& f : kVariantBools)
    if (m.*f.member) out[f.key] = true;
  return out;
}

StatusOr<ModelSpec> ModelFromJson(const nlohmann::json& object, const std::string& where,
                                  const std::string& fallback_name) {
  if (!object.is_object())
    return Status::InvalidArgument(fmt::format("{}: a model must be a JSON object", where));
  P3D_RETURN_IF_ERROR(CheckKnownFields(object, where));
  JsonFields f(object, where);
  ModelSpec m;
  m.name = fallback_name;
  for (const char* key : {"name", "id"}) {
    if (f.Has(key)) {
      P3D_ASSIGN_OR_RETURN(m.name, f.String(key));
    }
  }
  P3D_ASSIGN_OR_RETURN(std::string arch, f.String("arch"));
  P3D_ASSIGN_OR_RETURN(m.arch, ArchFromName(arch, where));
  const bool gpt2 = m.arch == Arch::kGpt2;
  P3D_ASSIGN_OR_RETURN(m.layers, f.PositiveInt("layers"));
  P3D_ASSIGN_OR_RETURN(m.hidden, f.PositiveInt("hidden"));
  P3D_ASSIGN_OR_RETURN(m.heads, f.PositiveInt("heads"));
  P3D_ASSIGN_OR_RETURN(m.vocab, f.PositiveInt("vocab"));
  P3D_ASSIGN_OR_RETURN(m.alibi, f.BoolOr("alibi", false));
  P3D_ASSIGN_OR_RETURN(m.embedding_norm, f.BoolOr("embedding_norm", false));
  if (gpt2) {
    P3D_ASSIGN_OR_RETURN(m.ffn, f.PositiveIntOr("ffn", 4 * m.hidden));
    if (m.alibi) {
      P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveIntOr("max_positions", 2048));
    } else {
      P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveInt("max_positions"));
    }
  } else {
    P3D_ASSIGN_OR_RETURN(m.ffn, f.PositiveInt("ffn"));
    P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveIntOr("max_positions", 4096));
  }
  P3D_ASSIGN_OR_RETURN(m.kv_heads, f.PositiveIntOr("kv_heads", m.heads));
  P3D_ASSIGN_OR_RETURN(m.tie_embeddings, f.BoolOr("tie_embeddings", gpt2));
  P3D_ASSIGN_OR_RETURN(m.qkv_bias, f.BoolOr("qkv_bias", false));
  P3D_ASSIGN_OR_RETURN(m.experts, f.PositiveIntOr("experts", 1));
  P3D_ASSIGN_OR_RETURN(m.experts_per_token, f.PositiveIntOr("experts_per_token", 1));
  for (const IntField& field : kVariantInts) {
    if (!f.Has(field.key)) continue;
    P3D_ASSIGN_OR_RETURN(m.*field.member, f.IntInRange(field.key, 0, kMaxModelWidth));
  }
  for (const BoolField& field : kVariantBools) {
    P3D_ASSIGN_OR_RETURN(m.*field.member, f.BoolOr(field.key, false));
  }
  Status valid = Validate(m);
  if (!valid.ok()) return Status::InvalidArgument(fmt::format("{}: {}", where, valid.message()));
  P3D_RETURN_IF_ERROR(CheckStatedCount(f, "parameters", m.TotalParams()));
  P3D_RETURN_IF_ERROR(CheckStatedCount(f, "active_parameters", m.ActiveParams()));
  return m;
}

}  // namespace p3d
