// DeepSpeed ds_config.json for one plan.
//
// Key names and defaults checked against DeepSpeed's configuration reference
// (deepspeedai/DeepSpeed docs/_pages/config-json.md) and its runtime
// (deepspeed/runtime/constants.py for data_types.grad_accum_dtype,
// deepspeed/runtime/pipe/engine.py for the pipeline limits); every key used
// here is present in DeepSpeed 0.16 and still read by master (2026).
//
// DeepSpeed checks train_batch_size == train_micro_batch_size_per_gpu *
// gradient_accumulation_steps * DP world size, where the DP world size is the
// mpu's data-parallel size (world / (TP * PP)) when a model-parallel unit is
// passed to deepspeed.initialize; p3d writes all three so none is inferred.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "planner/export.h"
#include "planner/export_precision.h"

namespace p3d {
namespace {

using Json = nlohmann::ordered_json;

// Overlap and bucket sizes are the framework profile's (what p3d predicts
// with): overlap_comm, reduce and allgather buckets of grad_bucket_elements.
// ZeRO-3 keys scale with the hidden size H the way the Hugging Face DeepSpeed
// integration fills "auto": prefetch 0.9*H*H, parameters smaller than 10*H
// stay unsharded.
Json ZeroSection(const ModelSpec& model, const Framework& fw, int stage, Offload offload) {
  const int64_t h2 = model.hidden * model.hidden;
  const auto bucket = static_cast<int64_t>(fw.grad_bucket_elements);
  Json zero;
  zero["stage"] = stage;
  if (stage == 0) return zero;
  // config-json.md: offload_optimizer is valid for ZeRO stages 1-3,
  // offload_param for stage 3 only (rules offload=>zero>=1, offload_params=>zero3).
  if (offload != Offload::kNone)
    zero["offload_optimizer"] = Json{{"device", "cpu"}, {"pin_memory", true}};
  if (offload == Offload::kOptimizerAndParams)
    zero["offload_param"] = Json{{"device", "cpu"}, {"pin_memory", true}};
  zero["overlap_comm"] = fw.grad_reduce_overlap;
  zero["contiguous_gradients"] = true;
  zero["reduce_bucket_size"] = bucket;
  if (stage <= 2) {
    zero["reduce_scatter"] = fw.zero_reduce_scatter;
    zero["allgather_partitions"] = true;
    zero["allgather_bucket_size"] = bucket;
  } else {
    zero["stage3_prefetch_bucket_size"] = h2 * 9 / 10;
    zero["stage3_param_persistence_threshold"] = 10 * model.hidden;
    zero["stage3_max_live_parameters"] = int64_t{1000000000};  // DeepSpeed default (1e9)
    zero["stage3_max_reuse_distance"] = int64_t{1000000000};   // DeepSpeed default (1e9)
    zero["stage3_gather_16bit_weights_on_model_save"] = true;
  }
  return zero;
}

// The pipeline engine's limits (ZeRO-2/3 with PP, interleaving) are the
// deepspeed profile's rules (simulator/frameworks/deepspeed.json), checked by
// CheckFrameworkRuns; here, what only the config file cannot say.
Status CheckDeepSpeedLimits(const PlanRequest& request, const Plan& plan) {
  P3D_RETURN_IF_ERROR(CheckFrameworkRuns(request, plan));
  // PipelineModule._partition_layers (deepspeed/runtime/pipe/module.py)
  // splits by partition_method 'uniform', 'parameters' or 'type:<regex>';
  // none takes a layer count per stage.
  if (plan.uneven_stages()) {
    return Status::Infeasible(fmt::format(
        "deepspeed: uneven stages (first stage {} / last stage {} layers, 0 = not set): DeepSpeed's "
        "PipelineModule places layers by partition_method ('uniform', 'parameters' or 'type:<regex>', "
        "deepspeed/runtime/pipe/module.py) and takes no layer count per stage; export to megatron "
        "(--decoder-first/last-pipeline-num-layers) or pick a PP that divides the layers",
        plan.first_stage_layers, plan.last_stage_layers));
  }
  const Precision& p = request.training.precision;
  return CheckExportPrecision(
      p, {.framework = "deepspeed",
          .param = " has no DeepSpeed mode (bf16 = 2, fp32 = 4)",
          .grad = " has no data_types.grad_accum_dtype (bf16 = 2, fp32 = 4)",
          .master = ": DeepSpeed keeps fp32 master weights and fp32 Adam moments on the GPU "
                    "(4 + 8 bytes) unless it offloads"});
}

}  // namespace

StatusOr<ExportedFile> ExportDeepSpeedConfig(const PlanRequest& request,
                                             const EvaluatedPlan& evaluated) {
  const Plan& plan = evaluated.plan;
  P3D_RETURN_IF_ERROR(CheckExportable(request, plan));
  P3D_RETURN_IF_ERROR(CheckExportFramework("deepspeed", request.framework.framework.name));
  P3D_RETURN_IF_ERROR(CheckDeepSpeedLimits(request, plan));
  const Precision& precision = request.training.precision;

  Json config;
  config["train_batch_size"] = plan.global_batch();
  config["train_micro_batch_size_per_gpu"] = plan.micro_batch;
  config["gradient_accumulation_steps"] = plan.grad_accum;
  config["gradient_clipping"] = 1.0;
  config["bf16"] = Json{{"enabled", precision.param_bytes == 2}};
  config["data_types"] = Json{{"grad_accum_dtype", precision.grad_bytes == 2 ? "bf16" : "fp32"}};
  config["zero_optimization"] = ZeroSection(request.model, request.training.framework, plan.zero, plan.offload);

  ExportedFile out;
  if (plan.offload != Offload::kNone) {
    out.notes.push_back(
        "offload: give DeepSpeed an Adam/AdamW optimizer (it then runs DeepSpeedCPUAdam; "
        "zero_force_ds_cpu_optimizer, default true, rejects a torch optimizer) and make sure each "
        "node has the host memory p3d predicts (host/node column)");
  }
  const int64_t layers_per_stage = (request.model.layers + plan.pp - 1) / plan.pp;
  if (plan.recompute == Recompute::kFull) {
    config["activation_checkpointing"] =
        Json{{"partition_activations", false},           {"cpu_checkpointing", false},
             {"contiguous_memory_optimization", false},  {"number_checkpoints", layers_per_stage},
             {"synchronize_checkpoint_boundary", false}, {"profile", false}};
    if (plan.pp > 1) {
      // PipelineModule checkpoints every `interval` layers (engine.py reads
      // pipeline.activation_checkpoint_interval).
      config["pipeline"] = Json{{"activation_checkpoint_interval", 1}};
    } else {
      out.notes.push_back(
          "full recompute: the model must wrap each transformer layer in "
          "deepspeed.checkpointing.checkpoint (Megatron-DeepSpeed: --checkpoint-activations); the "
          "activation_checkpointing section only configures that API");
    }
  } else if (plan.recompute == Recompute::kSelective) {
    out.notes.push_back(
        "selective recompute has no DeepSpeed config key: it is model code (Megatron-DeepSpeed: "
        "--recompute-granularity selective); without it activation memory is higher than "
        "predicted");
  }
  if (plan.pp > 1) {
    out.notes.push_back(fmt::format(
        "PP={}: build the model as deepspeed.pipe.PipelineModule(num_stages={}) "
        "(Megatron-DeepSpeed: "
        "--pipeline-model-parallel-size {}); the config does not carry the pipeline degree",
        plan.pp, plan.pp, plan.pp));
  }
  if (request.model.alibi || request.model.embedding_norm) {
    out.notes.push_back(
        "ALiBi / the embedding LayerNorm are model code the config does not carry (BigScience "
        "Megatron-DeepSpeed: --position-embedding-type alibi --embed-layernorm)");
  }
  if (plan.tp > 1) {
    out.notes.push_back(fmt::format(
        "TP={}: DeepSpeed's config does not split layers; run Megatron-DeepSpeed with "
        "--tensor-model-parallel-size {}{} and pass its mpu to deepspeed.initialize so DeepSpeed's "
        "DP size is world/(TP*PP) = {}",
        plan.tp, plan.tp, plan.sequence_parallel ? " --sequence-parallel" : "", plan.dp));
  }
  out.text = config.dump(2) + "\n";
  return out;
}

}  // namespace p3d
