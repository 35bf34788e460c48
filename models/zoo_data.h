// The text of models/zoo.json, embedded at build time (zoo_data.cc.in) so
// p3d binaries work from any directory.
#pragma once

#include <string_view>

namespace p3d {

std::string_view ZooJsonText();

}  // namespace p3d
