// Model files on disk: a HuggingFace config.json or p3d's own model JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "models/model_spec.h"

namespace p3d {

// ".../Llama-2-7b-hf/config.json" -> "Llama-2-7b-hf"; ".../my-model.json" -> "my-model".
std::string ModelNameFromPath(const std::string& path);

// Loads a model file, choosing the format by content: a file with a
// "p3d_model" key, or without a "model_type" key, is p3d format
// (models/model_json.h); otherwise it is a HuggingFace config
// (models/hf_config.h).
StatusOr<ModelSpec> LoadModelFile(const std::string& path);

}  // namespace p3d
