// A PlanRequest for a zoo model on catalog hardware, as the planner tests use it.
#pragma once

#include <string>

#include "models/zoo.h"
#include "simulator/evaluated_plan.h"
#include "simulator/hardware.h"

namespace p3d {

inline PlanRequest CatalogRequest(const std::string& model, const std::string& gpu, int gpus,
                                  int64_t global_batch = 512) {
  PlanRequest r;
  r.model = ZooModel(model).value();
  r.cluster = CatalogCluster(gpu).value();
  r.cluster.num_gpus = gpus;
  r.training.global_batch = global_batch;
  return r;
}

}  // namespace p3d
