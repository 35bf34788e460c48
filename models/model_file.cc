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
  P3D_ASSIGN_OR_RETURN(nlohmann::json content, ReadJsonFile(path, "model file"));
  if (content.is_object() && !content.contains("p3d_model") && content.contains("model_type"))
    return LoadHfConfig(path);
  return ModelFromJson(content, path, ModelNameFromPath(path));
}

}  // namespace p3d
