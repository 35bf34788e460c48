// p3d-compare: a saved plan's prediction beside the run that measured it.
//
//   p3d-plan --model gpt-1.3b --gpus 1 --profile profile.json --save-plan plan.json
//   p3d-run --plan plan.json --json run.json
//   p3d-compare plan.json run.json [--json out.json] [--svg timeline.svg]
//
// Front end only (planner/compare.h): exit 0 when compared, 2 on bad input,
// 3 when the fit boundary was wrong. docs/calibration.md defines every row.
#include <CLI/CLI.hpp>
#include <iostream>

#include "common/input_file.h"
#include "common/json_fields.h"
#include "common/tool_main.h"
#include "planner/compare.h"

namespace {

int Fail(const p3d::Status& s) {
  std::cerr << "p3d-compare: " << s.ToString() << "\n";
  return p3d::kExitBadInput;
}

int Compare(int argc, char** argv) {
  std::string plan_file, measured_file, json_path, svg_path;
  bool run_failed = false;
  CLI::App app{
      "p3d-compare: predicted (p3d-plan --save-plan) vs measured (p3d-run --json), "
      "figure by figure, with the error of each (docs/calibration.md)"};
  app.add_option("plan", plan_file, "saved plan (p3d-plan --save-plan)")->required();
  app.add_option("measured", measured_file, "run results (p3d-run --json)");
  app.add_option("--json", json_path, "also write the comparison as JSON");
  app.add_option("--svg", svg_path, "draw predicted and measured timelines on one axis");
  app.add_flag("--run-failed", run_failed,
               "the forced run of this plan ran out of memory: report the fit boundary only");
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  if (run_failed != measured_file.empty())
    return Fail(p3d::Status::InvalidArgument("give either a measured file or --run-failed"));

  p3d::StatusOr<p3d::Comparison> c =
      run_failed ? p3d::CompareFailedRun(plan_file) : p3d::CompareFiles(plan_file, measured_file);
  if (!c.ok()) return Fail(c.status());
  std::cout << p3d::FormatComparison(*c);
  if (!json_path.empty()) {
    p3d::Status s = p3d::WriteFileAtomic(json_path, p3d::ComparisonToJson(*c).dump(2) + "\n", "--json");
    if (!s.ok()) return Fail(s);
  }
  if (!svg_path.empty() && !run_failed) {
    auto plan = p3d::ReadJsonFile(plan_file, "plan file");
    auto measured = p3d::ReadJsonFile(measured_file, "measured file");
    if (!plan.ok()) return Fail(plan.status());
    if (!measured.ok()) return Fail(measured.status());
    p3d::StatusOr<std::string> svg =
        p3d::RenderComparisonSvg(*plan, plan_file, *measured, measured_file);
    if (!svg.ok()) return Fail(svg.status());
    p3d::Status s = p3d::WriteFileAtomic(svg_path, *svg, "--svg");
    if (!s.ok()) return Fail(s);
  }
  return c->fit.boundary_right() ? 0 : p3d::kExitInfeasible;
}

}  // namespace

int main(int argc, char** argv) {
  return p3d::GuardedMain("p3d-compare", p3d::kExitBadInput, [&] { return Compare(argc, argv); });
}
