// torchtitan job-config fragment (TOML) for one plan.
//
// Keys follow torchtitan/config/job_config.py (the Parallelism, Training and
// ActivationCheckpoint dataclasses, whose fields are the TOML keys of the
// [parallelism], [training] and [activation_checkpoint] tables). The device
// mesh is ["pp", "dp_replicate", "dp_shard", "cp", "tp"]
// (torchtitan/distributed/parallel_dims.py), i.e. rank = tp + TP*(cp +
// CP*(dp_shard + S*(dp_replicate + R*pp))): p3d's layout with the gradient
// group DP x CP split into R replicas of shard groups of S x CP ranks. FSDP2
// shards over the flattened dp_shard x cp mesh, so a plan's ZeRO shard group
// (Plan::zero_shards) is data_parallel_shard_degree x context_parallel_degree.
//
// The keys are a table (TorchtitanKeys): one row per key, rendered grouped by
// TOML table in order, so a dimension adds rows, not code paths.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "planner/export.h"
#include "common/fp8.h"
#include "planner/export_precision.h"

namespace p3d {
namespace {

struct TomlKey {
  const char* table;
  const char* key;
  std::string value;  // TOML literal: 8, "1F1B", ["layers.4", "layers.8"], true
};

std::string Quoted(std::string_view s) { return fmt::format("\"{}\"", s); }

// Data-parallel degrees (torchtitan's replicate x shard = Plan::dp).
struct DpDegrees {
  int replicate = 1, shard = 1;
};
DpDegrees DegreesOf(const Plan& plan) {
  if (plan.zero == 0) return {plan.dp, 1};  // DDP (replicate); 1-D only (rule zero0=>1d)
  const int shard = plan.zero_shards() / plan.cp;
  return {plan.dp / shard, shard};
}

Status CheckTorchtitanLimits(const PlanRequest& request, const Plan& plan) {
  // ZeRO-1/2, TP without SP, DDP with other dimensions (CP included: FSDP2
  // shards over the dp_shard x cp mesh whenever CP > 1), optimizer-only
  // offload: the torchtitan profile's rules (simulator/frameworks/torchtitan.json).
  P3D_RETURN_IF_ERROR(CheckFrameworkRuns(request, plan));
  if (plan.zero_shard > 0 && plan.zero_shard % plan.cp != 0)
    return Status::Infeasible(fmt::format(
        "torchtitan: shard group {} is not a multiple of CP={}: FSDP2 shards over "
        "data_parallel_shard_degree x context_parallel_degree ranks",
        plan.zero_shard, plan.cp));
  if (plan.attention != AttentionImpl::kFused)
    return Status::Infeasible(
        "torchtitan: the unfused attention core: torchtitan's SDPA picks cuDNN or flash attention "
        "(models/attention.py), which p3d predicts as the fused core");
  const Precision& p = request.training.precision;
  return CheckExportPrecision(
      p, {.framework = "torchtitan",
          .param = " has no torchtitan mode (training.mixed_precision_param bfloat16 = 2, float32 = 4)",
          .grad = ": torchtitan reduces gradients in training.mixed_precision_reduce float32 (4) or "
                  "bfloat16 (2)",
          .master = ": FSDP2 keeps fp32 parameters and AdamW moments (4 + 8 bytes) only"});
}

// torchtitan splits the model before each named module of
// pipeline_parallel_split_points (pipeline_module_split): the first layer of
// every virtual stage after the first, stage v = chunk * PP + rank holding
// ChunkLayers(v) layers (Interleaved1F1B's loop order, as Megatron's).
std::string SplitPoints(const Plan& plan, int64_t layers) {
  std::string out = "[";
  int64_t first = 0;
  for (int v = 0; v + 1 < plan.pp * plan.vpp; ++v) {
    first += ChunkLayers(plan, layers, v);
    out += fmt::format("{}\"layers.{}\"", v == 0 ? "" : ", ", first);
  }
  return out + "]";
}

std::vector<TomlKey> TorchtitanKeys(const PlanRequest& request, const Plan& plan) {
  const DpDegrees dp = DegreesOf(plan);
  const Precision& prec = request.training.precision;
  std::vector<TomlKey> keys = {
      {"parallelism", "data_parallel_replicate_degree", std::to_string(dp.replicate)},
      {"parallelism", "data_parallel_shard_degree", std::to_string(dp.shard)},
      {"parallelism", "tensor_parallel_degree", std::to_string(plan.tp)},
      {"parallelism", "context_parallel_degree", std::to_string(plan.cp)},
      {"parallelism", "pipeline_parallel_degree", std::to_string(plan.pp)},
  };
  if (plan.cp > 1)  // a ring: each step exchanges the K/V shards (PyTorch's context_parallel)
    keys.push_back({"parallelism", "context_parallel_rotate_method", Quoted("alltoall")});
  if (plan.pp > 1) {
    keys.push_back({"parallelism", "pipeline_parallel_schedule",
                    Quoted(plan.vpp > 1 ? "Interleaved1F1B" : "1F1B")});
    keys.push_back({"parallelism", "pipeline_parallel_split_points",
                    SplitPoints(plan, request.model.layers)});
    keys.push_back({"parallelism", "pipeline_parallel_microbatch_size",
                    std::to_string(plan.micro_batch)});
  }
  // Without a pipeline local_batch_size is one forward's batch and
  // global_batch_size / (local x DP) the accumulation steps; with one, the
  // schedule runs local / microbatch_size micro-batches per step.
  const int64_t local = plan.pp > 1 ? plan.micro_batch * plan.grad_accum : plan.micro_batch;
  keys.push_back({"training", "local_batch_size", std::to_string(local)});
  keys.push_back({"training", "global_batch_size", std::to_string(plan.global_batch())});
  keys.push_back({"training", "seq_len", std::to_string(request.training.seq)});
  keys.push_back({"training", "mixed_precision_param",
                  Quoted(prec.param_bytes == 2 ? "bfloat16" : "float32")});
  keys.push_back({"training", "mixed_precision_reduce",
                  Quoted(prec.grad_bytes == 2 ? "bfloat16" : "float32")});
  if (plan.offload == Offload::kOptimizerAndParams)
    keys.push_back({"training", "enable_cpu_offload", "true"});
  // FP8 (the profile runs tensorwise and mxfp8; docs/float8.md and
  // config/job_config.py's Float8 / MX tables): the converter swaps the
  // linears. The FP8 FSDP all-gather (enable_fsdp_float8_all_gather) stays at
  // its default off: the profile's fp8_param_gather is empty, so p3d predicts
  // a bf16 gather.
  const Fp8Recipe fp8 = request.training.fp8;
  if (fp8 == Fp8Recipe::kMxfp8) {
    keys.push_back({"model", "converters", "[\"mx\"]"});
    keys.push_back({"mx", "recipe_name", Quoted("mxfp8")});
  } else if (fp8 != Fp8Recipe::kOff) {
    keys.push_back({"model", "converters", "[\"float8\"]"});
    keys.push_back({"float8", "recipe_name", Quoted(Fp8RecipeName(fp8))});
  }
  keys.push_back({"activation_checkpoint", "mode", Quoted(RecomputeName(plan.recompute))});
  if (plan.recompute == Recompute::kSelective)  // the profile's op-level policy
    keys.push_back({"activation_checkpoint", "selective_ac_option", Quoted("op")});
  return keys;
}

std::string RenderToml(const std::vector<TomlKey>& keys) {
  std::vector<const char*> tables;
  for (const TomlKey& k : keys)
    if (std::find(tables.begin(), tables.end(), std::string_view(k.table)) == tables.end())
      tables.push_back(k.table);
  std::string out;
  for (const char* table : tables) {
    out += fmt::format("{}[{}]\n", out.empty() ? "" : "\n", table);
    for (const TomlKey& k : keys)
      if (std::string_view(k.table) == table) out += fmt::format("{} = {}\n", k.key, k.value);
  }
  return out;
}

}  // namespace

StatusOr<ExportedFile> ExportTorchtitanConfig(const PlanRequest& request,
                                              const EvaluatedPlan& evaluated) {
  const Plan& plan = evaluated.plan;
  P3D_RETURN_IF_ERROR(CheckExportable(request, plan));
  P3D_RETURN_IF_ERROR(CheckExportFramework("torchtitan", request.framework.framework.name));
  P3D_RETURN_IF_ERROR(CheckTorchtitanLimits(request, plan));
  ExportedFile out;
  out.text = RenderToml(TorchtitanKeys(request, plan));
  out.notes.push_back(
      "a fragment: merge it into a torchtitan job config (train_configs/*.toml) that names the "
      "model ([model] name, flavor) and the data; keys it sets override the file's");
  return out;
}

}  // namespace p3d
