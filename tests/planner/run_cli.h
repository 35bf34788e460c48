// RunPlanCli as the planner tests drive it: options in, Status and both streams out.
#pragma once

#include <sstream>
#include <string>

#include "planner/plan_cli.h"

namespace p3d {

struct CliResult {
  Status status;
  std::string out, err;
};

inline CliResult RunCli(const PlanCliOptions& o) {
  std::ostringstream out, err;
  Status s = RunPlanCli(o, out, err);
  return {s, out.str(), err.str()};
}

}  // namespace p3d
