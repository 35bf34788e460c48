// RuleFailed: the one way a rule list reports a broken rule (planner/rules.h,
// simulator/executor_support.h): it returns the rule's id and writes the
// message, built by `message()`, only when the caller wants it (the search
// asks for the id alone, millions of times).
#pragma once

#include <string>

namespace p3d {

template <typename Message>
const char* RuleFailed(std::string* detail, const char* rule, Message&& message) {
  if (detail) *detail = message();
  return rule;
}

}  // namespace p3d
