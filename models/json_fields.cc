#include "models/json_fields.h"

#include <fmt/format.h>

#include <cmath>

namespace p3d {

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
