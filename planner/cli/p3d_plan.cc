// p3d-plan: which DP/TP/PP/ZeRO layout should I run, will it fit, how fast?
//
//   p3d-plan --model 70B --gpus 64 --mem 80
//
// Front end only: exit codes (0 ok, 2 bad input, 3 nothing legal or nothing
// fits). Flags: planner/plan_flags.h; all logic: planner/plan_cli.h.
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/tool_main.h"
#include "planner/plan_cli.h"
#include "planner/plan_flags.h"

int main(int argc, char** argv) {
  return p3d::GuardedMain("p3d-plan", p3d::kExitBadInput, [&] {
  p3d::PlanCliOptions o;
  CLI::App app{"p3d-plan: rank every legal DP x TP x PP x ZeRO plan of a model on a cluster.\n"
               "All figures printed are predictions (docs/metrics.md defines each)."};
  p3d::AddPlanFlags(app, &o);
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  p3d::Status s = p3d::RunPlanCli(o, std::cout, std::cerr);
  if (!s.ok()) {
    std::cerr << "p3d-plan: " << s.ToString() << "\n";
    return s.code() == p3d::Status::Code::kInfeasible ? p3d::kExitInfeasible : p3d::kExitBadInput;
  }
  return 0;
  });
}
