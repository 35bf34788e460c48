// The p3d-plan command as a library function, so that tests can drive it
// without a process: options in, text out, Status for errors.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "common/status.h"

namespace p3d {

struct PlanCliOptions {
  std::string model;                  // zoo id, size shorthand ("70B"), or config.json path
  int64_t gpus = 0;
  std::optional<double> mem_gb;       // picks a default GPU of this capacity
  std::string gpu;                    // catalog name or a hardware JSON file
  std::string profile;                // p3d-calibrate profile applied on top (docs/calibration.md)
  std::optional<int> gpus_per_node;
  std::optional<int> dp, tp, cp, pp, vpp, zero, ep, etp;
  std::optional<int> zero_shard;      // HSDP shard group; 0 = the whole DP x CP group
  std::optional<int> first_stage_layers, last_stage_layers;  // uneven pipeline stages (either fixes the split)
  std::optional<bool> account_for_embedding, account_for_loss;  // embedding/loss split accounting
  std::optional<int64_t> micro_batch, global_batch, seq;
  std::string recompute;              // "" (search), "none", "selective", "full"
  std::optional<bool> sequence_parallel;
  std::string offload;                // "" (search), "none", "optimizer", "params"
  std::string placement;              // "" (search), "tp-cp-ep-dp-pp", "tp-pp-dp" (Plan::placement)
  std::string framework;              // profile name or file; "" = p3d, or the --export format's framework
  std::string attention;              // the attention core: "fused" | "unfused"; "" = the framework's
  std::string grad_dtype;             // "fp32" (18 bytes/param) or "bf16" (16); "" = the framework's
  std::string fp8;                    // FP8 recipe (common/fp8.h): "off" | "delayed" | ...; "" = off
  std::optional<int> master_bytes;    // bytes/param of the master weights (default 4, fp32)
  std::optional<int> adam_bytes;      // bytes/param of the Adam moments (default 8, two fp32)
  int top = 10;
  int pick = 1;                       // which ranked plan --explain/--save-plan/--export/--report use
  bool explain = false;
  bool json = false;
  bool list_gpus = false;
  bool list_models = false;
  bool list_frameworks = false;
  bool allow_tp_across_nodes = false;
  bool runnable = false;              // only plans p3d-run runs
  std::optional<bool> dropout;        // unset: the framework's default
  bool ep_a2a_overlap = false;        // TrainingSpec::ep_a2a_overlap
  bool ep_deepep = false;             // TrainingSpec::ep_deepep
  std::string save_plan;              // write the picked plan as JSON here
  std::string export_format;          // deepspeed | megatron | torchrun | slurm
  std::string report;                 // write a self-contained HTML report here
  std::optional<double> claim_step_s; // a claimed step time to check against the FLOP floor
};

// Runs the command. Output goes to `out`, progress and notes to `err`.
// Returns the first error (naming the option or rule at fault).
Status RunPlanCli(const PlanCliOptions& options, std::ostream& out, std::ostream& err);

}  // namespace p3d
