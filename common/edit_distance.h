// Levenshtein edit distance, for "did you mean" hints (ClosestMatch in
// common/json_fields.h, the zoo's close model ids in models/zoo.cc).
#pragma once

#include <cstddef>
#include <string_view>

namespace p3d {

// Insertions, deletions and substitutions that turn `a` into `b`.
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace p3d
