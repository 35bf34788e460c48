// p3d's own JSON model format: the zoo's entries (models/zoo.json) and user
// files passed as `--model mymodel.json`. Fields (docs/models.md has the table):
//   "p3d_model": 1        marks a file as p3d format (optional; a file without
//                         "model_type" is read as p3d format too)
//   "name" or "id"        model name (string; default: the caller's fallback)
//   "arch"                "gpt2" or "llama" (required)
//   "layers" "hidden" "heads" "vocab"   required positive integers
//   "ffn"                 required for llama; gpt2 default 4 * hidden
//   "kv_heads"            default heads
//   "max_positions"       required for gpt2 (learned table); llama default 4096,
//                         gpt2 with alibi default 2048 (a context length then)
//   "tie_embeddings"      default true for gpt2, false for llama
//   "qkv_bias"            default false
//   "experts", "experts_per_token"      default 1 (dense)
//   "alibi"               default false: ALiBi biases, no position parameters (BLOOM)
//   "embedding_norm"      default false: a norm after the token embedding (BLOOM)
//   "parameters", "active_parameters"   written by ModelToJson; when present
//                         on input they must equal the counts the shape gives
//   "source", "shorthand", "comment"    documentation (zoo), not read here
// Unknown fields are errors, so a typo ("hiden") cannot silently take a default.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "models/model_spec.h"

namespace p3d {

// "gpt2" -> kGpt2, "llama" -> kLlama; anything else is an error naming `where`.
StatusOr<Arch> ArchFromName(const std::string& name, const std::string& where);

// All shape fields plus "parameters" and "active_parameters" (element counts).
nlohmann::json ModelToJson(const ModelSpec& model);

// Inverse of ModelToJson. `where` (file path or zoo id) prefixes errors;
// `fallback_name` names the model when the object has no "name"/"id".
StatusOr<ModelSpec> ModelFromJson(const nlohmann::json& object, const std::string& where,
                                  const std::string& fallback_name);

}  // namespace p3d
