#include "models/model_file.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/hf_config.h"
#include "models/model_json.h"

namespace p3d {

StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(fmt::format("cannot open model file '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IoError(fmt::format("cannot read model file '{}'", path));
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    return Status::InvalidArgument(
        fmt::format("{}: not valid JSON (truncated or malformed): {}", path, e.what()));
  }
}

std::string ModelNameFromPath(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename() == "config.json") {
    std::string folder = std::filesystem::absolute(p).parent_path().filename().string();
    if (!folder.empty()) return folder;
  }
  return p.stem().string();
}

StatusOr<ModelSpec> LoadModelFile(const std::string& path) {
  P3D_ASSIGN_OR_RETURN(nlohmann::json content, ReadJsonFile(path));
  if (content.is_object() && !content.contains("p3d_model") && content.contains("model_type"))
    return LoadHfConfig(path);
  return ModelFromJson(content, path, ModelNameFromPath(path));
}

}  // namespace p3d
