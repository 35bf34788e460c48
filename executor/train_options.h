// TrainOptions: what one p3d-run rank trains: the model, the Plan (the layout
// and recipe p3d-plan searches over, common/plan.h), and what is not a plan
// (sequence length, steps, seed, data, optimizer hyper-parameters, files, the
// rank's process groups). p3d-run fills it from its flags or from a saved plan
// (ApplySavedPlan) and checks it once (CheckRunnable) before touching a GPU.
// Pure logic, tested on CPU.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/plan.h"
#include "common/status.h"
#include "executor/kernels/optimizer.h"
#include "executor/overlap_schedule.h"
#include "models/model_spec.h"
#include "simulator/saved_plan.h"

namespace p3d {

class ProcessGroups;

struct TrainOptions {
  ModelSpec model;
  // Layout and recipe: world = dp * tp * pp ranks (common/rank_grid.h); ZeRO
  // over DP (0..1 with tp or pp > 1); 1F1B when vpp == 1, interleaved 1F1B
  // with vpp chunks per rank otherwise (layers split evenly into pp * vpp
  // chunks); sequence parallelism over TP (executor/tensor_parallel.h);
  // offload kOptimizer: master / m / v and AdamW on the host (model.h);
  // micro_batch and grad_accum are per DP rank.
  Plan plan;
  int64_t seq = 1024;
  int offload_threads = 0;          // CPU AdamW threads per rank (0: all)
  ProcessGroups* groups = nullptr;  // required when plan.gpus() > 1
  // Called on every rank before each optimizer step (e.g. fault injection).
  std::function<void(int64_t step)> before_step;
  int64_t steps = 10;
  int warmup = 2;  // steps excluded from the timing statistics
  uint64_t seed = 1234;
  AdamWHyper adam;             // lr, betas, eps, weight decay (step is set per step)
  float max_grad_norm = 1.0f;  // <= 0: no clipping
  int64_t logits_chunk = 0;    // 0: default (memory_plan.h)
  // Gradient bucket of the DP reduction, bytes of fp32 gradients (--bucket-mb;
  // executor/overlap_schedule.h): the simulator's bucket by default.
  int64_t grad_bucket_bytes = kDefaultGradBucketBytes;
  std::string data_path;  // empty: synthetic tokens
  std::string data_dtype = "uint16";
  std::string dump_dir;  // non-empty: write the reference-check tensors here
  std::string save_path, load_path;
  bool profile = false;  // one extra, phase-timed step after the run
  bool gemm_epilogues = false;  // ModelConfig::gemm_epilogues (--gemm-epilogues)
};

// Runs exactly the saved plan (p3d-plan --save-plan): its Plan, model,
// sequence length and logits chunk replace those of `options`.
void ApplySavedPlan(const SavedPlan& saved, TrainOptions* options);

// Every check p3d-run makes of a plan on the CPU: the executor-support rules
// (simulator/executor_support.h: layout sanity and the p3d framework profile's
// rules) and, with pp > 1, every rank's pipeline program
// ("rule interleave-microbatches", "rule pipeline schedule").
Status CheckRunnable(const Plan& plan);

}  // namespace p3d
