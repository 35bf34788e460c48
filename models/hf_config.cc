#include "models/hf_config.h"

#include <fmt/format.h>

#include "common/json_fields.h"
#include "models/model_file.h"

namespace p3d {
namespace {

// transformers' defaults for max_position_embeddings when a config omits it.
int64_t DefaultMaxPositions(const std::string& model_type) {
  if (model_type == "llama") return 2048;
  if (model_type == "qwen2") return 32768;
  return 4096 * 32;  // mistral, mixtral
}

Status ParseGpt2(const JsonFields& f, ModelSpec& m) {
  m.arch = Arch::kGpt2;
  P3D_ASSIGN_OR_RETURN(m.hidden, f.PositiveInt("n_embd"));
  P3D_ASSIGN_OR_RETURN(m.layers, f.PositiveInt("n_layer"));
  P3D_ASSIGN_OR_RETURN(m.heads, f.PositiveInt("n_head"));
  m.kv_heads = m.heads;
  if (f.Has("n_positions") || !f.Has("n_ctx")) {
    P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveInt("n_positions"));
  } else {
    P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveInt("n_ctx"));
  }
  P3D_ASSIGN_OR_RETURN(m.ffn, f.PositiveIntOr("n_inner", 4 * m.hidden));
  P3D_ASSIGN_OR_RETURN(m.vocab, f.PositiveInt("vocab_size"));
  P3D_ASSIGN_OR_RETURN(m.tie_embeddings, f.BoolOr("tie_word_embeddings", true));
  return Status::Ok();
}

// BLOOM: GPT-2's layer (LayerNorm, GELU MLP of 4H, biases), ALiBi instead of
// positions, a LayerNorm after the word embedding, the head tied. transformers'
// BloomConfig also reads n_embed for hidden_size (and its attribute map
// num_hidden_layers / num_attention_heads for n_layer / n_head); seq_length, when present, is
// the training context (ALiBi has no position table; default 2048, BLOOM's).
Status ParseBloom(const JsonFields& f, ModelSpec& m) {
  m.arch = Arch::kGpt2;
  m.alibi = true;
  m.embedding_norm = true;
  P3D_ASSIGN_OR_RETURN(m.hidden, f.Has("n_embed") ? f.PositiveInt("n_embed") : f.PositiveInt("hidden_size"));
  P3D_ASSIGN_OR_RETURN(m.layers, f.Has("n_layer") ? f.PositiveInt("n_layer") : f.PositiveInt("num_hidden_layers"));
  P3D_ASSIGN_OR_RETURN(m.heads, f.Has("n_head") ? f.PositiveInt("n_head") : f.PositiveInt("num_attention_heads"));
  m.kv_heads = m.heads;
  m.ffn = 4 * m.hidden;
  P3D_ASSIGN_OR_RETURN(m.vocab, f.PositiveInt("vocab_size"));
  P3D_ASSIGN_OR_RETURN(m.max_positions, f.PositiveIntOr("seq_length", 2048));
  P3D_ASSIGN_OR_RETURN(m.tie_embeddings, f.BoolOr("tie_word_embeddings", true));
  return Status::Ok();
}

// qwen3_moe and deepseek_v3 can place MoE layers on a stride or list dense
// layers anywhere; p3d models leading dense layers then MoE layers only.
Status CheckMoeEveryLayer(const JsonFields& f, const char* stride_key) {
  P3D_ASSIGN_OR_RETURN(int64_t stride, f.PositiveIntOr(stride_key, 1));
  if (stride != 1)
    return f.Error(stride_key, fmt::format("is {}; p3d models an MoE block in every layer after the "
                                           "leading dense ones (1)", stride));
  if (f.Has("mlp_only_layers") && !(f.object().at("mlp_only_layers").is_array() &&
                                    f.object().at("mlp_only_layers").empty()))
    return f.Error("mlp_only_layers", "lists dense layers; p3d models leading dense layers only (dense_layers)");
  return Status::Ok();
}

// gpt-oss's layer_types: "sliding_attention" / "full_attention" per layer,
// which must follow ModelSpec's pattern (every p-th layer full).
Status ParseLayerTypes(const JsonFields& f, ModelSpec& m) {
  if (!f.Has("layer_types")) return Status::Ok();
  const nlohmann::json& types = f.object().at("layer_types");
  if (!types.is_array() || static_cast<int64_t>(types.size()) != m.layers)
    return f.Error("layer_types", fmt::format("must list {} layer types", m.layers));
  m.full_attention_every = 0;
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] == "full_attention") {
      m.full_attention_every = static_cast<int64_t>(i) + 1;
      break;
    }
  }
  for (size_t i = 0; i < types.size(); ++i) {
    const bool windowed = types[i] == "sliding_attention";
    if (!windowed && types[i] != "full_attention")
      return f.Error("layer_types", fmt::format("entry {} is {}; expected \"sliding_attention\" or "
                                                "\"full_attention\"", i, types[i].dump()));
    if (windowed != m.KindOfLayer(static_cast<int64_t>(i)).windowed)
      return f.Error("layer_types", fmt::format("layer {} breaks the pattern of one full-attention layer "
                                                "every {}; p3d models that pattern only",
                                                i, m.full_attention_every));
  }
  return Status::Ok();
}

// DeepSeek-V3 (and V2): MLA attention, leading dense layers, shared + routed
// experts of moe_intermediate_size; noaux_tc routing adds a per-expert score
// correction bias. The multi-token-prediction module
// (num_nextn_predict_layers) is not part of the main model and not imported.
Status ParseDeepSeek(const JsonFields& f, ModelSpec& m) {
  m.kv_heads = m.heads;  // MLA: every head has its own k and v
  if (f.Has("q_lora_rank")) {
    P3D_ASSIGN_OR_RETURN(m.q_lora_rank, f.PositiveInt("q_lora_rank"));
  }
  P3D_ASSIGN_OR_RETURN(m.kv_lora_rank, f.PositiveInt("kv_lora_rank"));
  P3D_ASSIGN_OR_RETURN(m.qk_nope_head_dim, f.PositiveInt("qk_nope_head_dim"));
  P3D_ASSIGN_OR_RETURN(m.qk_rope_head_dim, f.PositiveInt("qk_rope_head_dim"));
  P3D_ASSIGN_OR_RETURN(m.v_head_dim, f.PositiveInt("v_head_dim"));
  P3D_ASSIGN_OR_RETURN(m.experts, f.PositiveInt("n_routed_experts"));
  P3D_ASSIGN_OR_RETURN(m.experts_per_token, f.PositiveInt("num_experts_per_tok"));
  P3D_ASSIGN_OR_RETURN(m.moe_ffn, f.PositiveInt("moe_intermediate_size"));
  if (f.Has("n_shared_experts")) {
    P3D_ASSIGN_OR_RETURN(m.shared_experts, f.IntInRange("n_shared_experts", 0, kMaxModelExperts));
  }
  if (f.Has("first_k_dense_replace")) {
    P3D_ASSIGN_OR_RETURN(m.dense_layers, f.IntInRange("first_k_dense_replace", 0, kMaxModelLayers));
  }
  P3D_RETURN_IF_ERROR(CheckMoeEveryLayer(f, "moe_layer_freq"));
  if (f.Has("n_group") || f.Has("topk_group")) {  // group-limited routing
    P3D_ASSIGN_OR_RETURN(m.expert_groups, f.IntInRange("n_group", 1, kMaxModelExperts));
    P3D_ASSIGN_OR_RETURN(m.groups_per_token, f.IntInRange("topk_group", 1, kMaxModelExperts));
  }
  if (f.Has("topk_method")) {
    P3D_ASSIGN_OR_RETURN(std::string method, f.String("topk_method"));
    m.router_bias = method == "noaux_tc";
  }
  return Status::Ok();
}

Status ParseLlamaFamily(const JsonFields& f, const std::string& model_type, ModelSpec& m) {
  m.arch = Arch::kLlama;
  P3D_ASSIGN_OR_RETURN(m.hidden, f.PositiveInt("hidden_size"));
  P3D_ASSIGN_OR_RETURN(m.layers, f.PositiveInt("num_hidden_layers"));
  P3D_ASSIGN_OR_RETURN(m.heads, f.PositiveInt("num_attention_heads"));
  P3D_ASSIGN_OR_RETURN(m.kv_heads, f.PositiveIntOr("num_key_value_heads", m.heads));
  P3D_ASSIGN_OR_RETURN(m.ffn, f.PositiveInt("intermediate_size"));
  P3D_ASSIGN_OR_RETURN(m.vocab, f.PositiveInt("vocab_size"));
  P3D_ASSIGN_OR_RETURN(m.max_positions,
                       f.PositiveIntOr("max_position_embeddings", DefaultMaxPositions(model_type)));
  P3D_ASSIGN_OR_RETURN(m.tie_embeddings, f.BoolOr("tie_word_embeddings", false));
  if (model_type == "deepseek_v3") return ParseDeepSeek(f, m);
  if (f.Has("head_dim")) {
    P3D_ASSIGN_OR_RETURN(int64_t head_dim, f.PositiveInt("head_dim"));
    if (m.hidden % m.heads != 0 || head_dim != m.hidden / m.heads) m.head_dim_override = head_dim;
  }
  P3D_ASSIGN_OR_RETURN(bool mlp_bias, f.BoolOr("mlp_bias", false));
  if (mlp_bias) return f.Error("mlp_bias", "is true; p3d's llama architecture has no MLP biases");
  // Llama's attention_bias puts biases on q, k, v and o; gpt-oss always has them.
  P3D_ASSIGN_OR_RETURN(m.attention_bias, f.BoolOr("attention_bias", model_type == "gpt_oss"));
  m.qkv_bias = model_type == "qwen2";  // Qwen2 always biases q, k and v.
  m.qk_norm = model_type == "qwen3" || model_type == "qwen3_moe";
  if (model_type == "mixtral" || model_type == "gpt_oss") {
    P3D_ASSIGN_OR_RETURN(m.experts, f.PositiveInt("num_local_experts"));
    P3D_ASSIGN_OR_RETURN(m.experts_per_token, f.PositiveInt(f.Has("num_experts_per_tok") ? "num_experts_per_tok"
                                                                                          : "experts_per_token"));
  }
  if (model_type == "qwen3_moe") {
    P3D_ASSIGN_OR_RETURN(m.experts, f.PositiveInt("num_experts"));
    P3D_ASSIGN_OR_RETURN(m.experts_per_token, f.PositiveInt("num_experts_per_tok"));
    P3D_ASSIGN_OR_RETURN(m.moe_ffn, f.PositiveInt("moe_intermediate_size"));
    P3D_RETURN_IF_ERROR(CheckMoeEveryLayer(f, "decoder_sparse_step"));
  }
  if (model_type == "gpt_oss") {
    // Attention sinks, biases on the router and on every expert linear, and
    // sliding-window attention on the layers layer_types marks.
    m.attention_sinks = m.router_bias = m.expert_bias = true;
    P3D_ASSIGN_OR_RETURN(m.sliding_window, f.PositiveInt("sliding_window"));
    P3D_RETURN_IF_ERROR(ParseLayerTypes(f, m));
  }
  return Status::Ok();
}

bool IsSupported(const std::string& t) {
  return t == "llama" || t == "mistral" || t == "qwen2" || t == "qwen3" || t == "mixtral" || t == "qwen3_moe" ||
         t == "deepseek_v3" || t == "gpt_oss" || t == "gpt2" || t == "bloom";
}

// `where` prefixes errors: the file path, or "HF config '<name>'" for in-memory JSON.
StatusOr<ModelSpec> ParseHfConfigAt(const nlohmann::json& config, const std::string& name,
                                    const std::string& where) {
  if (!config.is_object())
    return Status::InvalidArgument(fmt::format("{}: expected a JSON object", where));
  JsonFields top(config, where);
  P3D_ASSIGN_OR_RETURN(std::string model_type, top.String("model_type"));
  auto text = config.find("text_config");
  if (!IsSupported(model_type) && text != config.end() && text->is_object()) {
    // A multimodal wrapper (transformers 5 nests the language model): import the text model.
    return ParseHfConfigAt(*text, name, where + " text_config");
  }
  if (!IsSupported(model_type))
    return top.Error("model_type", fmt::format("\"{}\" is not supported (supported: {})",
                                               model_type, SupportedHfModelTypes()));
  ModelSpec m;
  m.name = name;
  if (model_type == "gpt2") {
    P3D_RETURN_IF_ERROR(ParseGpt2(top, m));
  } else if (model_type == "bloom") {
    P3D_RETURN_IF_ERROR(ParseBloom(top, m));
  } else {
    P3D_RETURN_IF_ERROR(ParseLlamaFamily(top, model_type, m));
  }
  Status valid = Validate(m);
  if (!valid.ok()) return Status::InvalidArgument(fmt::format("{}: {}", where, valid.message()));
  return m;
}

}  // namespace

const char* SupportedHfModelTypes() {
  return "llama, mistral, qwen2, qwen3, mixtral, qwen3_moe, deepseek_v3, gpt_oss, gpt2, bloom";
}

StatusOr<ModelSpec> ParseHfConfig(const nlohmann::json& config, const std::string& name) {
  return ParseHfConfigAt(config, name, fmt::format("HF config '{}'", name));
}

StatusOr<ModelSpec> LoadHfConfig(const std::string& path) {
  P3D_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(path, "model config"));
  return ParseHfConfigAt(config, ModelNameFromPath(path), path);
}

}  // namespace p3d
