// The parsers p3d-fuzz drives, one Target each: every input a user can hand
// p3d (HF config.json or p3d model file, hardware JSON, calibrated profile,
// saved plan, p3d-run's results for p3d-compare, p3d-plan's command line).
// A target runs one input through the same code the tools run and checks
// that an accepted input gives sane numbers; it returns false (with a
// message) when an accepted input gave nonsense. Crashes, sanitizer reports
// and hangs are caught by the driver.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace p3d::fuzz {

struct Target {
  std::string name;
  std::vector<std::string> seeds;  // corpus: real files of the repo and generated documents
  // Runs one input; false + *why when an accepted input gave nonsense.
  std::function<bool(const std::string& input, std::string* why)> run;
};

// All targets, seeds read from the repository at `root` (tests/models/data,
// bench/results, the zoo, the catalog).
std::vector<Target> AllTargets(const std::string& root);

}  // namespace p3d::fuzz
