// The one JSON reader of p3d's inputs: ParseJson turns text into a document
// without ever throwing (malformed text, numbers that overflow a double such
// as 1e605, nesting deeper than kMaxJsonDepth all become a Status naming the
// input), ReadJsonFile adds the bounded file read (common/input_file.h), and
// JsonFields gives typed, range-checked reads of one object's fields. Every
// error names the field and where the object came from (a file path or zoo
// entry), e.g. "config.json: field 'num_hidden_layers' must be an integer,
// got \"32\"". Null counts as absent (HF configs write `"n_inner": null`).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace p3d {

// Deeper nesting is refused before parsing (the parser recurses per level).
inline constexpr int kMaxJsonDepth = 64;
// The largest count PositiveInt accepts (2^40); stricter limits follow per field.
inline constexpr int64_t kMaxJsonCount = int64_t{1} << 40;

// Parses `text`; `where` (a path or "hardware file x.json") prefixes errors.
StatusOr<nlohmann::json> ParseJson(std::string_view text, const std::string& where);
// ReadInputFile (bounded, regular files only) + ParseJson.
StatusOr<nlohmann::json> ReadJsonFile(const std::string& path, const std::string& what);

// The closest of `candidates` to `word` by edit distance, or "" when none is
// within a third of the word's length (used for "did you mean" hints).
std::string ClosestMatch(std::string_view word, std::span<const std::string_view> candidates);
inline std::string ClosestMatch(std::string_view word, std::initializer_list<std::string_view> candidates) {
  return ClosestMatch(word, std::span<const std::string_view>(candidates.begin(), candidates.size()));
}

class JsonFields {
 public:
  // `object` must outlive this; `where` prefixes every message.
  JsonFields(const nlohmann::json& object, std::string where);

  bool Has(const char* key) const;  // present and not null
  // A required integer in 1..kMaxJsonCount. Integral floats (4096.0) are accepted.
  StatusOr<int64_t> PositiveInt(const char* key) const;
  // Like PositiveInt, but `fallback` when absent or null.
  StatusOr<int64_t> PositiveIntOr(const char* key, int64_t fallback) const;
  StatusOr<bool> BoolOr(const char* key, bool fallback) const;
  StatusOr<std::string> String(const char* key) const;
  // A required finite number in [min, max].
  StatusOr<double> Number(const char* key, double min, double max) const;
  // Like Number, but `fallback` when absent or null.
  StatusOr<double> NumberOr(const char* key, double min, double max, double fallback) const;
  // A required integer in [min, max] (integral floats accepted).
  StatusOr<int64_t> IntInRange(const char* key, int64_t min, int64_t max) const;

  // Every key of the object must be one of `known`; an unknown key is an
  // error that suggests the closest known one ("did you mean 'bytes_per_s'?").
  Status OnlyKeys(std::initializer_list<std::string_view> known) const;

  const std::string& where() const { return where_; }
  const nlohmann::json& object() const { return object_; }
  // "<where>: field '<key>' <what>", as an InvalidArgument status.
  Status Error(const char* key, const std::string& what) const;

 private:
  const nlohmann::json& object_;
  std::string where_;
};

}  // namespace p3d
