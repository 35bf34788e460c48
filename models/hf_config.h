// Import of HuggingFace transformers config.json files into a ModelSpec.
//
// Supported model_type values: llama, mistral, qwen2, qwen3, mixtral,
// qwen3_moe, deepseek_v3, gpt_oss (Llama architecture with their variants), gpt2 and
// bloom (GPT-2's layer with ALiBi and an embedding LayerNorm).
// Both transformers 4.x and 5.x layouts are read: `torch_dtype` or `dtype`,
// `rope_theta`/`rope_scaling` at top level or inside `rope_parameters` (none
// of these change the parameter count, so they are accepted and not used), and
// a multimodal wrapper whose own model_type is not supported but whose
// "text_config" object is (the text model is imported).
//
// Fields read (HF name -> ModelSpec):
//   llama family: hidden_size -> hidden, num_hidden_layers -> layers,
//     num_attention_heads -> heads, num_key_value_heads -> kv_heads (default
//     heads), intermediate_size -> ffn, vocab_size -> vocab,
//     max_position_embeddings -> max_positions (default: transformers' own
//     default for the model_type), tie_word_embeddings (default false);
//     head_dim -> head_dim (when not hidden/heads); attention_bias (q, k, v, o biases);
//     qwen3: q/k norms; mixtral: num_local_experts -> experts, num_experts_per_tok;
//     qwen3_moe: num_experts, num_experts_per_tok, moe_intermediate_size -> moe_ffn
//       (decoder_sparse_step must be 1, mlp_only_layers empty);
//     deepseek_v3: MLA (q_lora_rank, kv_lora_rank, qk_nope_head_dim,
//       qk_rope_head_dim, v_head_dim), n_routed_experts, n_shared_experts,
//       moe_intermediate_size, first_k_dense_replace -> dense_layers (moe_layer_freq
//       must be 1), topk_method "noaux_tc" -> router_bias; the MTP module
//       (num_nextn_predict_layers) is not imported;
//     gpt_oss: num_local_experts, num_experts_per_tok (or experts_per_token),
//       attention sinks, router and expert biases, sliding_window and layer_types
//       (one full-attention layer every p) -> full_attention_every.
//   gpt2: n_embd, n_layer, n_head, n_positions (or n_ctx), n_inner (absent or
//     null -> 4 * n_embd), vocab_size, tie_word_embeddings (default true).
//   bloom: hidden_size (or n_embed), n_layer (or num_hidden_layers), n_head
//     (or num_attention_heads), vocab_size, seq_length
//     -> max_positions (default 2048; a context length: ALiBi has no table),
//     tie_word_embeddings (default true); ffn = 4 * hidden.
// Shapes p3d cannot represent are errors, not approximations: mlp_bias on a
// llama model, MoE layers on a stride or a non-periodic layer_types list.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "models/model_spec.h"

namespace p3d {

// The model_type values ParseHfConfig accepts, in the order above.
const char* SupportedHfModelTypes();

// `name` becomes ModelSpec::name and prefixes every error message.
StatusOr<ModelSpec> ParseHfConfig(const nlohmann::json& config, const std::string& name);

// Reads and parses `path`. The model is named after the file's folder when the
// file is called config.json (".../Llama-2-7b-hf/config.json" ->
// "Llama-2-7b-hf"), else after the file's stem. Errors name the path.
StatusOr<ModelSpec> LoadHfConfig(const std::string& path);

}  // namespace p3d
