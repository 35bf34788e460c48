// Predicted vs measured (planner/compare.cc) on small JSON fixtures: a plan
// saved through p3d-plan --profile and a run document in p3d-run's --json
// schema (executor/run_report.cc).
#include "planner/compare.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/units.h"
#include "planner/plan_cli.h"

namespace p3d {
namespace {

using nlohmann::json;

std::string Temp(const std::string& name) { return testing::TempDir() + "/" + name; }

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::ofstream(Temp(name)) << text;
  return Temp(name);
}

// A measured h100-sxm profile (the raw-measurement part only; applied on the catalog GPU).
std::string Profile() {
  return WriteTemp("compare_profile.json", R"({"schema": "p3d-profile/1", "calibration": {
    "card": "NVIDIA H100 80GB HBM3", "catalog_gpu": "h100-sxm", "date": "2026-11-29",
    "gemm": [{"source": "plan", "m": 8192, "n": 6144, "k": 2048,
              "fwd_s": 3.7e-4, "dx_s": 3.9e-4, "dw_s": 4.1e-4}],
    "hbm": {"elementwise_bytes": 3e9, "elementwise_s": 1.1e-3},
    "runtime": {"device_total_bytes": 85520809984, "free_after_context_bytes": 84200000000}}})");
}

// gpt-1.3b, one GPU, B=4 x S=2048, no recompute, planned with the profile.
json SavedPlanDoc(const std::string& name = "compare_plan.json") {
  PlanCliOptions o;
  o.model = "gpt-1.3b";
  o.gpus = 1;
  o.gpu = "h100-sxm";
  o.profile = Profile();
  o.global_batch = 4;
  o.micro_batch = 4;
  o.seq = 2048;
  o.recompute = "none";
  o.zero = 0;
  o.top = 1;
  o.save_plan = Temp(name);
  std::ostringstream out, err;
  Status s = RunPlanCli(o, out, err);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_NE(out.str().find("profile " + o.profile), std::string::npos)
      << "header names the profile";
  std::ifstream in(o.save_plan);
  return json::parse(in);
}

// What p3d-run --json writes for that plan (numbers made up, schema real).
json RunDoc() {
  return json::parse(R"({
    "device": {"name": "NVIDIA H100 80GB HBM3", "catalog_gpu": "h100-sxm", "peak_flops": 9.89e14},
    "run": {"model": {"name": "gpt-1.3b"}, "micro_batch": 4, "grad_accum": 1, "global_batch": 4,
            "seq": 2048, "steps": 10, "warmup": 2, "recompute": "none"},
    "steps": [],
    "summary": {"step_time_s": {"median": 0.215}, "tokens_per_s": 38100, "mfu": 0.344},
    "memory": {"arena_bytes": 52000000000,
               "terms_bytes": {"weights": 2630000000, "gradients": 5260000000,
                               "optimizer": 15780000000, "activations": 27000000000,
                               "buffers": 1330000000},
               "device_used_peak_bytes": 53000000000, "device_used_before_arena_bytes": 6e8,
               "device_total_bytes": 84929216512, "regions": []},
    "profile": {"step_seconds": 0.216,
                "phase_seconds": {"gemm": 0.15, "attention": 0.03, "other": 0.025,
                                  "optimizer": 0.008, "idle": 0.003}}})");
}

TEST(CompareRun, EveryFigureBesideItsPrediction) {
  const json plan = SavedPlanDoc();
  const json run = RunDoc();
  Comparison c = CompareRun(plan, "plan.json", run, "run.json").value();
  const json& pred = plan["prediction"];
  for (const char* term : {"weights", "gradients", "optimizer", "activations", "buffers"}) {
    const ComparedFigure* f = c.Find(std::string("memory.") + term);
    ASSERT_NE(f, nullptr) << term;
    EXPECT_DOUBLE_EQ(*f->predicted, pred["memory"][term].get<double>());
    EXPECT_DOUBLE_EQ(*f->measured, run["memory"]["terms_bytes"][term].get<double>());
    EXPECT_DOUBLE_EQ(*f->error(), *f->predicted / *f->measured - 1);
  }
  // Total: device used at peak + the driver's reserve (card total - CUDA's total).
  const double reserve = 85520809984.0 - 84929216512.0;
  EXPECT_DOUBLE_EQ(*c.Find("memory.total")->measured, 53000000000.0 + reserve);
  EXPECT_DOUBLE_EQ(*c.Find("memory.runtime")->measured, 53000000000.0 + reserve - 52000000000.0);
  EXPECT_DOUBLE_EQ(*c.Find("time.step_s")->measured, 0.215);
  EXPECT_DOUBLE_EQ(*c.Find("time.step_s")->predicted, pred["time"]["step_s"].get<double>());
  EXPECT_DOUBLE_EQ(*c.Find("time.compute_s")->measured, 0.15 + 0.03 + 0.025);
  EXPECT_DOUBLE_EQ(*c.Find("time.optimizer_s")->measured, 0.008);
  EXPECT_DOUBLE_EQ(*c.Find("time.other_s")->measured, 0.003);
  EXPECT_EQ(*c.Find("time.tp_comm_s")->measured, 0);  // one GPU
  EXPECT_FALSE(c.Find("time.tp_comm_s")->error());    // 0 measured: no relative error
  EXPECT_DOUBLE_EQ(*c.Find("mfu")->measured, 0.344);
  EXPECT_TRUE(c.fit.predicted_fits && c.fit.measured_fits && c.fit.boundary_right());
  EXPECT_EQ(c.predicted_source, "profile " + Temp("compare_profile.json"));

  const std::string table = FormatComparison(c);
  for (const char* word : {"predicted", "measured", "error", "activations", "boundary was right"})
    EXPECT_NE(table.find(word), std::string::npos) << word;
  const json j = ComparisonToJson(c);
  EXPECT_EQ(j["schema"], kCompareSchema);
  EXPECT_EQ(j["figures"].size(), c.figures.size());
  EXPECT_TRUE(j["fit"]["boundary_right"].get<bool>());
}

TEST(CompareRun, AbsentMeasurementsHaveNoError) {
  json run = RunDoc();
  run.erase("profile");
  run["summary"]["mfu"] = nullptr;  // p3d-run prints no MFU for unknown cards
  Comparison c = CompareRun(SavedPlanDoc(), "plan.json", run, "run.json").value();
  EXPECT_FALSE(c.Find("time.compute_s")->measured);
  EXPECT_FALSE(c.Find("mfu")->measured);
  EXPECT_FALSE(c.Find("mfu")->error());
  EXPECT_TRUE(c.Find("mfu")->predicted);
}

// A measurement must be a measurement: negative, zero or missing step times and
// memory figures are refused with the field named (issue 18).
TEST(CompareRun, RefusesNegativeZeroAndMissingMeasurements) {
  const json plan = SavedPlanDoc();
  struct Case {
    const char* path;
    json value;
  };
  const Case cases[] = {{"/summary/step_time_s/median", -0.2},   {"/summary/step_time_s/median", 0},
                        {"/summary/step_time_s/median", nullptr}, {"/memory/device_used_peak_bytes", -1},
                        {"/memory/arena_bytes", 0},               {"/memory/terms_bytes/weights", -5},
                        {"/summary/tokens_per_s", -3}};
  for (const Case& k : cases) {
    json run = RunDoc();
    run[json::json_pointer(k.path)] = k.value;
    auto r = CompareRun(plan, "plan.json", run, "run.json");
    ASSERT_FALSE(r.ok()) << k.path << " = " << k.value.dump();
    std::string field = std::string(k.path + 1);
    for (char& ch : field) ch = ch == '/' ? '.' : ch;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  }
}

TEST(CompareRun, RefusesARunOfAnotherConfiguration) {
  const json plan = SavedPlanDoc();
  auto expect_refused = [&](json run, const std::string& field) {
    auto r = CompareRun(plan, "plan.json", run, "run.json");
    ASSERT_FALSE(r.ok()) << field;
    const std::string& msg = r.status().message();
    EXPECT_NE(msg.find(field), std::string::npos) << msg;
    EXPECT_NE(msg.find("run.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("plan.json"), std::string::npos) << msg;
  };
  json run = RunDoc();
  run["run"]["micro_batch"] = 2;
  expect_refused(run, "run.micro_batch");
  run = RunDoc();
  run["run"]["recompute"] = "full";
  expect_refused(run, "run.recompute");
  run = RunDoc();
  run["run"]["model"]["name"] = "gpt-2.7b";
  expect_refused(run, "run.model.name");
  run = RunDoc();
  run["run"]["tp"] = 2;
  expect_refused(run, "run.tp");
}

TEST(CompareRun, MissingOrIllTypedFieldsNameFileAndField) {
  const json plan = SavedPlanDoc();
  json run = RunDoc();
  run["memory"].erase("arena_bytes");
  auto r = CompareRun(plan, "plan.json", run, "run.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("run.json: field 'memory.arena_bytes' is missing"),
            std::string::npos)
      << r.status().message();
  run = RunDoc();
  run["summary"]["step_time_s"]["median"] = "fast";
  r = CompareRun(plan, "plan.json", run, "run.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'summary.step_time_s.median' must be a non-negative number"),
            std::string::npos);
  json bad_plan = plan;
  bad_plan["prediction"]["time"].erase("bubble_s");
  r = CompareRun(bad_plan, "plan.json", RunDoc(), "run.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("time.bubble_s"), std::string::npos);
  EXPECT_NE(r.status().message().find("plan.json"), std::string::npos);
  EXPECT_FALSE(CompareFiles(Temp("no_such_plan.json"), Temp("no_such_run.json")).ok());
}

TEST(CheckPredictedFit, RefusesAPredictedMissUnlessForced) {
  json doc = SavedPlanDoc();
  SavedPlan fits = ParseSavedPlan(doc, "plan.json").value();
  EXPECT_TRUE(CheckPredictedFit(fits, /*force=*/false, "plan.json").ok());
  doc["prediction"]["fits"] = false;
  SavedPlan miss = ParseSavedPlan(doc, "plan.json").value();
  Status s = CheckPredictedFit(miss, false, "plan.json");
  ASSERT_EQ(s.code(), Status::Code::kInfeasible);
  EXPECT_NE(s.message().find("--force"), std::string::npos);
  EXPECT_NE(s.message().find(fmt::format(
                "{:.2f} GiB", ToGiB(doc["prediction"]["memory"]["total"].get<double>()))),
            std::string::npos)
      << s.message();
  EXPECT_TRUE(CheckPredictedFit(miss, /*force=*/true, "plan.json").ok());
  doc["prediction"].erase("fits");
  SavedPlan none = ParseSavedPlan(doc, "plan.json").value();
  EXPECT_EQ(CheckPredictedFit(none, true, "plan.json").code(), Status::Code::kInvalidArgument);
}

TEST(FitBoundary, ForcedRunsTellWhetherThePredictionWasRight) {
  json doc = SavedPlanDoc();
  doc["prediction"]["fits"] = false;
  // Predicted a miss, forced, and it ran: the boundary was wrong.
  json run = RunDoc();
  run["run"]["forced"] = true;
  Comparison ran = CompareRun(doc, "plan.json", run, "run.json").value();
  EXPECT_TRUE(ran.fit.forced);
  EXPECT_FALSE(ran.fit.boundary_right());
  EXPECT_NE(FormatComparison(ran).find("WRONG"), std::string::npos);
  // Predicted a miss, forced, and it ran out of memory: right.
  const std::string path = WriteTemp("compare_miss.json", doc.dump());
  Comparison oom = CompareFailedRun(path).value();
  EXPECT_FALSE(oom.fit.measured_fits);
  EXPECT_TRUE(oom.fit.boundary_right());
  // Predicted a fit, and it ran out of memory: wrong.
  Comparison wrong = CompareFailedRun(WriteTemp("compare_fit.json", SavedPlanDoc().dump())).value();
  EXPECT_FALSE(wrong.fit.boundary_right());
}

TEST(ComparisonSvg, DrawsBothTracksOnOneAxis) {
  const json plan = SavedPlanDoc();
  std::string svg = RenderComparisonSvg(plan, "plan.json", RunDoc(), "run.json").value();
  EXPECT_NE(svg.find("predicted"), std::string::npos);
  EXPECT_NE(svg.find("measured"), std::string::npos);
  EXPECT_NE(svg.find("phase totals"), std::string::npos);
  json run = RunDoc();
  run["timeline"] = json::parse(R"([
    {"rank": 0, "kind": "forward", "microbatch": 0, "start_s": 0, "end_s": 0.07},
    {"rank": 0, "kind": "backward", "microbatch": 0, "start_s": 0.07, "end_s": 0.2},
    {"rank": 0, "kind": "optimizer", "start_s": 0.2, "end_s": 0.215}])");
  svg = RenderComparisonSvg(plan, "plan.json", run, "run.json").value();
  EXPECT_NE(svg.find("per-rank events"), std::string::npos);
  run["timeline"][1]["kind"] = "backwards";
  auto bad = RenderComparisonSvg(plan, "plan.json", run, "run.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("timeline[1].kind"), std::string::npos);
  // Found by p3d-fuzz: a rank of 1e9 drew a billion-row timeline (a hang).
  run["timeline"][1]["kind"] = "backward";
  for (const auto& [field, value] : {std::pair{"rank", json(1e9)}, {"rank", json(0.5)}, {"chunk", json(3)},
                                     {"end_s", json(1e300)}, {"microbatch", json(1e300)}}) {
    json r = run;
    r["timeline"][0][field] = value;
    auto refused = RenderComparisonSvg(plan, "plan.json", r, "run.json");
    ASSERT_FALSE(refused.ok()) << field;
    EXPECT_NE(refused.status().message().find("timeline[0]"), std::string::npos) << refused.status().message();
  }
}

}  // namespace
}  // namespace p3d
