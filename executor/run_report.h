// What p3d-run prints and writes: the end-of-run summary table and the JSON
// document of --json (schema in docs/executor.md). Pure formatting of a
// TrainResult, so it is tested without a GPU.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "executor/trainer.h"

namespace p3d {

// One line per step: "step    12  loss 5.4321  grad-norm 1.234  time 123.4 ms".
std::string FormatStep(const StepRecord& step);

// The end-of-run summary (step time, tokens/s, TFLOP/s, MFU or why none, memory).
std::string FormatSummary(const TrainOptions& options, const TrainResult& result);

nlohmann::json TrainResultToJson(const TrainOptions& options, const TrainResult& result);

}  // namespace p3d
