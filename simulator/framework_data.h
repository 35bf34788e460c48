// The texts of simulator/frameworks/*.json (the framework profiles), embedded
// at build time (framework_data.cc.in) so p3d binaries work from any
// directory. Sorted by name.
#pragma once

#include <span>
#include <string_view>

namespace p3d {

struct BuiltinFrameworkText {
  std::string_view name;  // the file name without .json
  std::string_view json;
};

std::span<const BuiltinFrameworkText> BuiltinFrameworkTexts();

}  // namespace p3d
