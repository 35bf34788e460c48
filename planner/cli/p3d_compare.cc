// p3d-compare: a saved plan's prediction beside the run that measured it.
//
//   p3d-plan --model gpt-1.3b --gpus 1 --profile profile.json --save-plan plan.json
//   p3d-run --plan plan.json --json run.json
//   p3d-compare plan.json run.json [--json out.json] [--svg timeline.svg]
//
// Front end only (planner/compare.h): exit 0 when compared, 2 on bad input,
// 3 when the fit boundary was wrong. docs/calibration.md defines every row.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "planner/compare.h"

namespace {

int Fail(const p3d::Status& s) {
  std::cerr << "p3d-compare: " << s.ToString() << "\n";
  return 2;
}

p3d::Status Write(const std::string& path, const std::string& text, const char* what) {
  std::ofstream out(path);
  out << text;
  if (!out)
    return p3d::Status::IoError("cannot write " + std::string(what) + " file '" + path + "'");
  return p3d::Status::Ok();
}

p3d::StatusOr<nlohmann::json> Read(const std::string& path) {
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!in.is_open() || j.is_discarded())
    return p3d::Status::InvalidArgument("cannot read JSON file '" + path + "'");
  return j;
}

}  // namespace

int main(int argc, char** argv) {
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
  CLI11_PARSE(app, argc, argv);
  if (run_failed != measured_file.empty())
    return Fail(p3d::Status::InvalidArgument("give either a measured file or --run-failed"));

  p3d::StatusOr<p3d::Comparison> c =
      run_failed ? p3d::CompareFailedRun(plan_file) : p3d::CompareFiles(plan_file, measured_file);
  if (!c.ok()) return Fail(c.status());
  std::cout << p3d::FormatComparison(*c);
  if (!json_path.empty()) {
    p3d::Status s = Write(json_path, p3d::ComparisonToJson(*c).dump(2) + "\n", "--json");
    if (!s.ok()) return Fail(s);
  }
  if (!svg_path.empty() && !run_failed) {
    auto plan = Read(plan_file);
    auto measured = Read(measured_file);
    if (!plan.ok()) return Fail(plan.status());
    if (!measured.ok()) return Fail(measured.status());
    p3d::StatusOr<std::string> svg =
        p3d::RenderComparisonSvg(*plan, plan_file, *measured, measured_file);
    if (!svg.ok()) return Fail(svg.status());
    p3d::Status s = Write(svg_path, *svg, "--svg");
    if (!s.ok()) return Fail(s);
  }
  return c->fit.boundary_right() ? 0 : 3;
}
