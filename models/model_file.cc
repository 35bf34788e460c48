#include "models/model_file.h"

#include <fmt/format.h>

#include <filesystem>

#include "common/json_fields.h"
#include "models/hf_config.h"
#include "models/model_json.h"

namespace p3d {

std::string ModelNameFromPath(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename() == "config.json") {
    std::string folder = std::filesystem::absolute(p).parent_path().filename().string();
    if (!folder.empty()) return folder;
  }
  return p.stem().string();
}

StatusOr<ModelSpec> LoadModelFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A HuggingFace model folder: its config.json.
    const std::string config = (std::filesystem::path(path) / "config.json").string();
    if (!std::filesystem::is_regular_file(config, ec))
      return Status::InvalidArgument(fmt::format(
          "model '{}' is a folder without a config.json; give a HuggingFace model folder, its config.json, "
          "or a p3d model file (docs/models.md)", path));
    return LoadModelFile(config);
  }
  P3D_ASSIGN_OR_RETURN(nlohmann::json content, ReadJsonFile(path, "model file"));
  if (content.is_object() && !content.contains("p3d_model") && content.contains("model_type"))
    return LoadHfConfig(path);
  // HF keys without model_type: a config.json missing its architecture, not a p3d file with typos.
  if (content.is_object() && !content.contains("p3d_model"))
    for (const char* hf_key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "n_embd", "n_layer"})
      if (content.contains(hf_key))
        return Status::InvalidArgument(fmt::format(
            "{}: looks like a HuggingFace config.json (it has '{}') but has no 'model_type' field; add it "
            "(supported: {}) or write a p3d model file (docs/models.md)", path, hf_key, SupportedHfModelTypes()));
  return ModelFromJson(content, path, ModelNameFromPath(path));
}

}  // namespace p3d
