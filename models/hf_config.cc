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
  if (f.Has("head_dim")) {
    P3D_ASSIGN_OR_RETURN(int64_t head_dim, f.PositiveInt("head_dim"));
    if (m.hidden % m.heads != 0 || head_dim != m.hidden / m.heads)
      return f.Error("head_dim", fmt::format("is {}, not hidden_size/num_attention_heads = {}/{}; "
                                             "p3d models head_dim = hidden/heads only",
                                             head_dim, m.hidden, m.heads));
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    P3D_ASSIGN_OR_RETURN(bool bias, f.BoolOr(key, false));
    if (bias) return f.Error(key, "is true; p3d's llama architecture has no such biases");
  }
  m.qkv_bias = model_type == "qwen2";  // Qwen2 always biases q, k and v.
  if (model_type == "mixtral") {
    P3D_ASSIGN_OR_RETURN(m.experts, f.PositiveInt("num_local_experts"));
    P3D_ASSIGN_OR_RETURN(m.experts_per_token, f.PositiveInt("num_experts_per_tok"));
  }
  return Status::Ok();
}

bool IsSupported(const std::string& t) {
  return t == "llama" || t == "mistral" || t == "qwen2" || t == "mixtral" || t == "gpt2" || t == "bloom";
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

const char* SupportedHfModelTypes() { return "llama, mistral, qwen2, mixtral, gpt2, bloom"; }

StatusOr<ModelSpec> ParseHfConfig(const nlohmann::json& config, const std::string& name) {
  return ParseHfConfigAt(config, name, fmt::format("HF config '{}'", name));
}

StatusOr<ModelSpec> LoadHfConfig(const std::string& path) {
  P3D_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(path, "model config"));
  return ParseHfConfigAt(config, ModelNameFromPath(path), path);
}

}  // namespace p3d
