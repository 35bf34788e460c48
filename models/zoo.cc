#include "models/zoo.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/edit_distance.h"
#include "common/json_fields.h"
#include "models/model_file.h"
#include "models/model_json.h"
#include "models/size_shorthand.h"
#include "models/zoo_data.h"

namespace p3d {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

StatusOr<ZooEntry> ParseEntry(const nlohmann::json& object, size_t index) {
  std::string where = fmt::format("zoo entry #{}", index);
  if (object.is_object() && object.contains("id") && object["id"].is_string())
    where = fmt::format("zoo entry '{}'", object["id"].get<std::string>());
  ZooEntry entry;
  P3D_ASSIGN_OR_RETURN(entry.model, ModelFromJson(object, where, ""));
  JsonFields f(object, where);
  P3D_ASSIGN_OR_RETURN(std::string id, f.String("id"));
  if (id != Lower(id)) return f.Error("id", "must be lowercase");
  if (f.Has("source")) {
    P3D_ASSIGN_OR_RETURN(entry.source, f.String("source"));
  }
  if (f.Has("shorthand")) {
    const nlohmann::json& list = object["shorthand"];
    if (!list.is_array()) return f.Error("shorthand", "must be a list of sizes such as \"7B\"");
    for (const nlohmann::json& s : list) {
      if (!s.is_string()) return f.Error("shorthand", fmt::format("has a non-string {}", s.dump()));
      P3D_RETURN_IF_ERROR(ParseSize(s.get<std::string>()).status());
      entry.shorthands.push_back(s.get<std::string>());
    }
  }
  return entry;
}

// Parses the embedded zoo; ids must be unique, and so must shorthand sizes.
StatusOr<std::vector<ZooEntry>> ParseZoo() {
  nlohmann::json zoo = nlohmann::json::parse(ZooJsonText(), nullptr, /*allow_exceptions=*/false);
  if (zoo.is_discarded() || !zoo.contains("models") || !zoo["models"].is_array())
    return Status::Internal("models/zoo.json: not valid JSON with a \"models\" list");
  std::vector<ZooEntry> entries;
  std::map<int64_t, std::string> shorthand_owner;
  for (size_t i = 0; i < zoo["models"].size(); ++i) {
    StatusOr<ZooEntry> entry = ParseEntry(zoo["models"][i], i);
    if (!entry.ok()) return Status::Internal("models/zoo.json: " + entry.status().message());
    for (const ZooEntry& e : entries)
      if (e.model.name == entry->model.name)
        return Status::Internal(fmt::format("models/zoo.json: duplicate id '{}'", e.model.name));
    for (const std::string& s : entry->shorthands) {
      int64_t params = *ParseSize(s);
      auto [it, fresh] = shorthand_owner.emplace(params, entry->model.name);
      if (!fresh)
        return Status::Internal(
            fmt::format("models/zoo.json: shorthand '{}' of '{}' is taken by '{}'", s,
                        entry->model.name, it->second));
    }
    entries.push_back(*std::move(entry));
  }
  return entries;
}

const StatusOr<std::vector<ZooEntry>>& ParsedZoo() {
  static const StatusOr<std::vector<ZooEntry>> zoo = ParseZoo();
  return zoo;
}

// Up to five zoo ids near `query`: within a few edits, or sharing a substring.
std::vector<std::string> CloseMatches(const std::string& query) {
  std::string q = Lower(query);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& id : ZooNames()) {
    size_t d = EditDistance(q, id);
    bool contains =
        q.size() >= 3 && (id.find(q) != std::string::npos || q.find(id) != std::string::npos);
    if (contains || d <= std::max<size_t>(2, q.size() / 4))
      scored.emplace_back(contains ? 0 : d, id);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < 5; ++i) out.push_back(scored[i].second);
  return out;
}

std::string UnknownModelMessage(const std::string& arg, const char* what) {
  std::vector<std::string> close = CloseMatches(arg);
  std::string hint =
      close.empty() ? "" : fmt::format(" Close matches: {}.", fmt::join(close, ", "));
  return fmt::format(
      "unknown model '{}': {}.{} Run with --list-models for the zoo, or pass a size such as 7B / "
      "500M / 2T, or a path to a HuggingFace config.json.",
      arg, what, hint);
}

StatusOr<ModelSpec> ResolveSize(const std::string& arg) {
  P3D_ASSIGN_OR_RETURN(int64_t params, ParseSize(arg));
  for (const ZooEntry& e : Zoo())
    for (const std::string& s : e.shorthands)
      if (*ParseSize(s) == params) return e.model;
  StatusOr<ModelSpec> generated = GenerateLlamaStyle(params, "llama-style-" + Lower(arg));
  if (!generated.ok())
    return Status::InvalidArgument(
        fmt::format("model size '{}': {}", arg, generated.status().message()));
  return generated;
}

}  // namespace

const std::vector<ZooEntry>& Zoo() {
  static const std::vector<ZooEntry> empty;
  return ParsedZoo().ok() ? *ParsedZoo() : empty;
}

Status ZooStatus() { return ParsedZoo().status(); }

const std::vector<std::string>& ZooNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const ZooEntry& e : Zoo()) out.push_back(e.model.name);
    return out;
  }();
  return names;
}

StatusOr<ModelSpec> ZooModel(const std::string& name) {
  P3D_RETURN_IF_ERROR(ZooStatus());
  std::string id = Lower(name);
  for (const ZooEntry& e : Zoo())
    if (e.model.name == id) return e.model;
  return Status::NotFound(UnknownModelMessage(name, "not a zoo id"));
}

StatusOr<ModelSpec> ResolveModel(const std::string& arg) {
  if (arg.empty()) return Status::InvalidArgument("--model is empty: give a zoo id, size or path");
  bool path_like = arg.find('/') != std::string::npos ||
                   (arg.size() > 5 && Lower(arg.substr(arg.size() - 5)) == ".json");
  if (path_like) return LoadModelFile(arg);
  StatusOr<ModelSpec> zoo = ZooModel(arg);
  if (zoo.ok() || zoo.status().code() != Status::Code::kNotFound) return zoo;
  if (LooksLikeSize(arg)) return ResolveSize(arg);
  std::error_code ec;
  if (std::filesystem::is_regular_file(arg, ec) || std::filesystem::is_directory(arg, ec)) return LoadModelFile(arg);
  return Status::NotFound(UnknownModelMessage(arg, "not a zoo id, a size, or an existing file"));
}

}  // namespace p3d
