// Exporters: write one evaluated plan as the files users launch with
// (DeepSpeed ds_config.json, Megatron-LM arguments, a torchrun line, a Slurm
// batch script). docs/exports.md lists every key and flag written, the
// framework versions they were checked against, and every refusal.
//
// Contract shared by all exporters:
// - The plan must satisfy the batch identity
//     request.training.global_batch == micro_batch * grad_accum * DP
//   and DP * TP * CP * PP == request.cluster.num_gpus; otherwise the export is
//   refused (InvalidArgument naming the rule). Nothing is ever rounded.
// - A plan the target framework cannot express is refused with Infeasible,
//   and the message names the framework's rule (file or flag) that forbids it.
// - What the file cannot carry but the user must still do (e.g. build the
//   model with DeepSpeed's PipelineModule) comes back in ExportedFile::notes,
//   one sentence each; front ends print them on stderr.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "simulator/evaluated_plan.h"

namespace p3d {

struct ExportedFile {
  std::string text;                // the file (or command line), ready to write
  std::vector<std::string> notes;  // manual steps the file cannot express
};

// What the launch exporters start on every GPU. `command` is a placeholder
// the user supplies (a script and its arguments); it is written verbatim,
// shell-quoted where it is nested inside another command.
struct LaunchOptions {
  std::string command = "train.py";
  std::string job_name = "p3d";
  int master_port = 29500;
};

// DeepSpeed ds_config.json (pretty JSON). Refuses ZeRO-2/3 with PP > 1 and
// VPP > 1 (DeepSpeed's PipelineEngine limits); TP > 1 is exported with a note
// that TP comes from Megatron-DeepSpeed, not from the config.
StatusOr<ExportedFile> ExportDeepSpeedConfig(const PlanRequest& request, const EvaluatedPlan& plan);

// Megatron-LM pretrain_gpt.py arguments, one "--flag [value]" per line joined
// with " \\\n" so the text pastes into a shell script. Refuses layer, head
// and schedule splits Megatron rejects at start-up (rules in docs/exports.md).
StatusOr<ExportedFile> ExportMegatronArgs(const PlanRequest& request, const EvaluatedPlan& plan);

// A torchtitan job-config fragment (TOML: [parallelism], [training],
// [activation_checkpoint]) for the torchtitan profile: the data-parallel
// replicate and shard degrees (HSDP), TP, CP, PP with its schedule and split
// points, the batch, sequence, mixed precision and activation checkpointing.
// Refuses what the profile's rules refuse and what torchtitan's mesh cannot
// express (a shard group not a multiple of CP, the unfused core).
StatusOr<ExportedFile> ExportTorchtitanConfig(const PlanRequest& request, const EvaluatedPlan& plan);

// A torchrun command to run on every node (NODE_RANK and MASTER_ADDR come from
// the environment). Refuses a GPU count that does not fill whole nodes when
// more than one node is needed (torchrun starts the same count on each node).
StatusOr<ExportedFile> ExportTorchrun(const PlanRequest& request, const EvaluatedPlan& plan,
                                      const LaunchOptions& launch = {});

// A Slurm batch script (sbatch) that starts torchrun once per node through
// srun, with MASTER_ADDR set to the first node of the allocation.
StatusOr<ExportedFile> ExportSlurm(const PlanRequest& request, const EvaluatedPlan& plan,
                                   const LaunchOptions& launch = {});

// Dispatches on `format`: "deepspeed" | "megatron" | "torchtitan" | "torchrun" | "slurm".
// Unknown names are InvalidArgument listing the known ones.
StatusOr<ExportedFile> ExportPlan(std::string_view format, const PlanRequest& request,
                                  const EvaluatedPlan& plan, const LaunchOptions& launch = {});

// The checks every exporter runs first (batch identity, GPU count, positive
// degrees); exposed so front ends can validate before writing files.
Status CheckExportable(const PlanRequest& request, const Plan& plan);

// OK when the plan's framework runs it (its profile's rules, limits and gaps,
// common/framework.h); else Infeasible naming the rule and its source.
Status CheckFrameworkRuns(const PlanRequest& request, const Plan& plan);

// The framework profiles (simulator/frameworks/) whose mechanisms a format's
// file states, the first being the one --export picks when --framework is not
// given: megatron -> megatron-core; deepspeed -> deepspeed,
// megatron-deepspeed. Empty for the launch formats, which carry no mechanism.
std::vector<std::string_view> ExportFrameworks(std::string_view format);
// OK when `format` writes the mechanisms of framework `name` (or is a launch
// format); else InvalidArgument naming the profiles it writes, so an export
// never disagrees with the prediction it is made from.
Status CheckExportFramework(std::string_view format, const std::string& name);

}  // namespace p3d
