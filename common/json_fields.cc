#include "common/json_fields.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/edit_distance.h"
#include "common/input_file.h"

namespace p3d {

namespace {

// Maximum bracket nesting of `text`, ignoring brackets inside strings.
int NestingDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return max_depth;
}

}  // namespace

StatusOr<nlohmann::json> ParseJson(std::string_view text, const std::string& where) {
  if (NestingDepth(text) > kMaxJsonDepth)
    return Status::InvalidArgument(
        fmt::format("{}: JSON nested deeper than {} levels", where, kMaxJsonDepth));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return Status::InvalidArgument(fmt::format("{}: not valid JSON (at byte {}): {}", where, e.byte,
                                               e.what()));
  } catch (const nlohmann::json::exception& e) {  // out_of_range: number overflow (1e605)
    return Status::InvalidArgument(fmt::format("{}: unreadable JSON: {}", where, e.what()));
  }
}

StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, const std::string& what) {
  P3D_ASSIGN_OR_RETURN(std::string text, ReadInputFile(path, what));
  return ParseJson(text, fmt::format("{} '{}'", what, path));
}

std::string ClosestMatch(std::string_view word, std::span<const std::string_view> candidates) {
  std::string best;
  size_t best_d = word.size() / 3 + 1;
  for (std::string_view c : candidates) {
    size_t d = EditDistance(word, c);
    if (d < best_d) best_d = d, best = std::string(c);
  }
  return best;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string where)
    : object_(object), where_(std::move(where)) {}

bool JsonFields::Has(const char* key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

Status JsonFields::Error(const char* key, const std::string& what) const {
  return Status::InvalidArgument(fmt::format("{}: field '{}' {}", where_, key, what));
}

StatusOr<int64_t> JsonFields::PositiveInt(const char* key) const {
  if (!Has(key)) return Error(key, "is missing (required)");
  const nlohmann::json& v = object_.at(key);
  int64_t n = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX})
      return Error(key, fmt::format("is too large: {}", v.dump()));
    n = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
             v.get<double>() == std::floor(v.get<double>()) && std::fabs(v.get<double>()) < 9e18) {
    n = static_cast<int64_t>(v.get<double>());
  } else {
    return Error(key, fmt::format("must be an integer, got {}", v.dump()));
  }
  if (n <= 0) return Error(key, fmt::format("must be positive, got {}", n));
  // Counts beyond 2^40 are no model, batch or cluster size; refusing them here
  // keeps arithmetic on them (4 * hidden as a default ffn) free of overflow
  // (found by p3d-fuzz under UBSan: hidden 2^63 - 1).
  if (n > kMaxJsonCount) return Error(key, fmt::format("is {}, over the limit of {}", n, kMaxJsonCount));
  return n;
}

StatusOr<int64_t> JsonFields::PositiveIntOr(const char* key, int64_t fallback) const {
  if (!Has(key)) return fallback;
  return PositiveInt(key);
}

StatusOr<bool> JsonFields::BoolOr(const char* key, bool fallback) const {
  if (!Has(key)) return fallback;
  const nlohmann::json& v = object_.at(key);
  if (!v.is_boolean()) return Error(key, fmt::format("must be true or false, got {}", v.dump()));
  return v.get<bool>();
}

StatusOr<std::string> JsonFields::String(const char* key) const {
  if (!Has(key)) return Error(key, "is missing (required)");
  const nlohmann::json& v = object_.at(key);
  if (!v.is_string()) return Error(key, fmt::format("must be a string, got {}", v.dump()));
  return v.get<std::string>();
}

}  // namespace p3d

namespace p3d {

StatusOr<double> JsonFields::Number(const char* key, double min, double max) const {
  if (!Has(key)) return Error(key, "is missing (required)");
  const nlohmann::json& v = object_.at(key);
  if (!v.is_number()) return Error(key, fmt::format("must be a number, got {}", v.dump()));
  double x = v.get<double>();
  if (!std::isfinite(x) || x < min || x > max)
    return Error(key, fmt::format("must be in [{:g}, {:g}], got {}", min, max, v.dump()));
  return x;
}

StatusOr<double> JsonFields::NumberOr(const char* key, double min, double max, double fallback) const {
  if (!Has(key)) return fallback;
  return Number(key, min, max);
}

StatusOr<int64_t> JsonFields::IntInRange(const char* key, int64_t min, int64_t max) const {
  if (!Has(key)) return Error(key, "is missing (required)");
  const nlohmann::json& v = object_.at(key);
  bool integral = v.is_number_integer() ||
                  (v.is_number_float() && std::isfinite(v.get<double>()) &&
                   v.get<double>() == std::floor(v.get<double>()));
  if (!integral) return Error(key, fmt::format("must be an integer, got {}", v.dump()));
  double x = v.get<double>();
  if (x < static_cast<double>(min) || x > static_cast<double>(max))
    return Error(key, fmt::format("must be in {}..{}, got {}", min, max, v.dump()));
  return v.is_number_float() ? static_cast<int64_t>(x) : v.get<int64_t>();
}

Status JsonFields::OnlyKeys(std::initializer_list<std::string_view> known) const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
    std::string hint = ClosestMatch(it.key(), known);
    return Error(it.key().c_str(), hint.empty() ? "is not a known field"
                                                : fmt::format("is not a known field; did you mean '{}'?", hint));
  }
  return Status::Ok();
}

}  // namespace p3d
