// Predicted vs measured: a saved plan (p3d-plan --save-plan, its
// "prediction") set beside what p3d-run measured running it (p3d-run --json),
// figure by figure, with the error of each. docs/calibration.md defines every
// row and the error; docs/json-schema.md the two inputs.
//
// error = predicted / measured - 1 (signed: +5% means the simulator predicted
// 5% more than the run measured). Rows exist for every figure the prediction
// has; a figure the run did not measure has no measured value and no error.
//
// Measured memory, one GPU (rank 0 unless the run reports per-rank memory):
//   weights .. buffers  the executor's arena regions by term (memory_plan.h)
//   total               device used at peak (cudaMemGetInfo total - free) +
//                       the driver's reserve (the plan's GPU memory_bytes -
//                       cudaMemGetInfo total, when they are the same card)
//   runtime             total - arena
// Measured time: step = median step time; compute / optimizer / other from
// the profiled step's phases (gemm + attention + other / optimizer / idle);
// tp/pp/dp comm and bubble from the run's "time" object when it has one.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "simulator/saved_plan.h"

namespace p3d {

inline constexpr char kCompareSchema[] = "p3d-compare/1";

struct ComparedFigure {
  std::string name;  // "memory.weights", "time.step_s", "tokens_per_s", "mfu", ...
  std::string unit;  // "bytes", "s", "tokens/s", "fraction"
  std::optional<double> predicted, measured;
  std::optional<double> error() const {
    if (!predicted || !measured || *measured == 0) return std::nullopt;
    return *predicted / *measured - 1;
  }
};

// Was the fit boundary right? measured_fits is false only for a run that
// failed out of memory (CompareFailedRun).
struct FitCheck {
  bool predicted_fits = false;
  bool measured_fits = false;
  bool forced = false;        // the run was started with --force
  double capacity_bytes = 0;  // the plan's GPU memory_bytes
  bool boundary_right() const { return predicted_fits == measured_fits; }
};

struct Comparison {
  std::string plan_file, measured_file;
  std::string plan_summary;      // model and layout
  std::string predicted_source;  // hardware the prediction used ("profile p.json", ...)
  std::string measured_device;   // the run's card
  std::vector<ComparedFigure> figures;
  FitCheck fit;
  const ComparedFigure* Find(const std::string& name) const;
};

// Errors name the file and the field, and refuse a run of another
// configuration than the plan (model, micro-batch, grad-accum, seq,
// recompute, dp/tp/pp/vpp/zero).
StatusOr<Comparison> CompareRun(const nlohmann::json& plan_doc, const std::string& plan_file,
                                const nlohmann::json& measured, const std::string& measured_file);
StatusOr<Comparison> CompareFiles(const std::string& plan_file, const std::string& measured_file);
// A forced run that ran out of memory: only the fit row.
StatusOr<Comparison> CompareFailedRun(const std::string& plan_file);

// Side-by-side table; every column is labelled "predicted" or "measured".
std::string FormatComparison(const Comparison& c);
nlohmann::json ComparisonToJson(const Comparison& c);

// Predicted and measured pipeline timelines on one time axis. Measured
// events come from the run's "timeline" array (rank, kind, microbatch,
// chunk, start_s, end_s) or, when it has none, from the profiled step's
// phase totals drawn back to back on rank 0.
StatusOr<std::string> RenderComparisonSvg(const nlohmann::json& plan_doc,
                                          const std::string& plan_file,
                                          const nlohmann::json& measured,
                                          const std::string& measured_file);


}  // namespace p3d
