// Host-side argument checks shared by the kernel launchers: a violated
// precondition is reported as a Status naming the kernel and the argument.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "executor/str_cat.h"

namespace p3d {

inline Status RequireMultiple(const char* kernel, const char* arg, int64_t value, int64_t of) {
  if (value <= 0 || value % of != 0)
    return Status::InvalidArgument(
        StrCat(kernel, ": ", arg, " = ", value, " must be a positive multiple of ", of));
  return Status::Ok();
}

inline Status RequirePositive(const char* kernel, const char* arg, int64_t value) {
  if (value <= 0)
    return Status::InvalidArgument(StrCat(kernel, ": ", arg, " = ", value, " must be positive"));
  return Status::Ok();
}

}  // namespace p3d
