// JsonFields: typed, checked reads of one JSON object's fields. Every error
// names the field and where the object came from (a file path or zoo entry),
// e.g. "config.json: field 'num_hidden_layers' must be an integer, got \"32\"".
// Null counts as absent (HF configs write `"n_inner": null` for a default).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace p3d {

class JsonFields {
 public:
  // `object` must outlive this; `where` prefixes every message.
  JsonFields(const nlohmann::json& object, std::string where);

  bool Has(const char* key) const;  // present and not null
  // A required integer > 0. Integral floats (4096.0) are accepted.
  StatusOr<int64_t> PositiveInt(const char* key) const;
  // Like PositiveInt, but `fallback` when absent or null.
  StatusOr<int64_t> PositiveIntOr(const char* key, int64_t fallback) const;
  StatusOr<bool> BoolOr(const char* key, bool fallback) const;
  StatusOr<std::string> String(const char* key) const;

  const std::string& where() const { return where_; }
  // "<where>: field '<key>' <what>", as an InvalidArgument status.
  Status Error(const char* key, const std::string& what) const;

 private:
  const nlohmann::json& object_;
  std::string where_;
};

}  // namespace p3d
