// StrCat: message building for CUDA translation units. nvcc's C++20 mode cannot
// compile fmt's consteval format strings (fmt 9), so .cu files build their
// Status messages with this instead of fmt::format.
#pragma once

#include <sstream>
#include <string>

namespace p3d {

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace p3d
