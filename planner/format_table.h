// Human-readable output of a search: the ranked table and the --explain text.
// Every figure printed is a prediction; docs/metrics.md defines each one.
#pragma once

#include <string>

#include "simulator/evaluated_plan.h"
#include "planner/search.h"

namespace p3d {

// Header lines describing the request (model, cluster, batch, where the hardware figures came from).
std::string FormatRequest(const PlanRequest& request);

// The ranked table: one row per plan with its layout, predicted step time,
// throughput, MFU and the peak stage's memory split into terms, in GiB.
std::string FormatPlanTable(const PlanRequest& request, const SearchResult& result);

}  // namespace p3d
