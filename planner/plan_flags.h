// The p3d-plan command line: every flag, its help text and its parsing into
// PlanCliOptions, in one function that the binary and the tests both call, so
// a test sees exactly the defaults a user gets (an absent flag leaves its
// option unset: the search covers that dimension).
#pragma once

#include <CLI/CLI.hpp>

#include "planner/plan_cli.h"

namespace p3d {

// Adds p3d-plan's flags to `app`, writing into `*o` (which must outlive `app`).
void AddPlanFlags(CLI::App& app, PlanCliOptions* o);

// Parses argv as p3d-plan would. A CLI11 error (unknown flag, malformed
// value, --help) is returned as InvalidArgument carrying CLI11's message.
StatusOr<PlanCliOptions> ParsePlanFlags(int argc, const char* const* argv);

}  // namespace p3d
