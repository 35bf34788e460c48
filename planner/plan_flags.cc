#include "planner/plan_flags.h"

namespace p3d {
namespace {

// A string option given as "" is an error, not "not given" (--report '').
const CLI::Validator& NonEmpty() {
  static const CLI::Validator v(
      [](std::string& s) { return s.empty() ? std::string("must not be empty") : std::string(); }, "NONEMPTY");
  return v;
}

}  // namespace

void AddPlanFlags(CLI::App& app, PlanCliOptions* o) {
  app.add_option("--model,-m", o->model, "zoo id (--list-models), size (7B, 70B, 175B, any size), or config.json")
      ->check(NonEmpty());
  app.add_option("--gpus,-n", o->gpus, "number of GPUs");
  app.add_option("--mem", o->mem_gb, "GPU memory in GB (picks a catalog GPU of that size)");
  app.add_option("--gpu,--hardware", o->gpu, "catalog GPU name (--list-gpus) or a hardware JSON file (docs/hardware.md)")
      ->check(NonEmpty());
  app.add_option("--profile", o->profile, "measured hardware profile from p3d-calibrate (docs/calibration.md)")
      ->check(NonEmpty());
  app.add_option("--gpus-per-node", o->gpus_per_node, "GPUs per node (default: the GPU's usual node)");
  app.add_option("--dp", o->dp, "fix data-parallel degree");
  app.add_option("--tp", o->tp, "fix tensor-parallel degree");
  app.add_option("--pp", o->pp, "fix pipeline-parallel degree");
  app.add_option("--cp", o->cp,
                 "fix context-parallel degree (Megatron-Core --context-parallel-size: each sequence split over CP "
                 "ranks, K/V exchanged in a ring; S divisible by 2 x CP)");
  app.add_option("--vpp", o->vpp, "fix virtual pipeline stages per rank (interleaved 1F1B when > 1)");
  app.add_option("--ep", o->ep,
                 "fix expert-parallel degree (MoE models; carved from DP x CP x TP, Megatron-Core --expert-model-parallel-size)");
  app.add_option("--etp", o->etp,
                 "expert tensor-parallel degree (Megatron-Core --expert-tensor-parallel-size; default: TP)");
  app.add_option("--first-stage-layers", o->first_stage_layers,
                 "fix the first pipeline stage's layers (Megatron --decoder-first-pipeline-num-layers); the middle "
                 "stages share the rest evenly (default: even split, or the balanced one when PP does not divide L)");
  app.add_option("--last-stage-layers", o->last_stage_layers,
                 "fix the last pipeline stage's layers (Megatron --decoder-last-pipeline-num-layers)");
  app.add_flag_callback(
      "--account-for-embedding-in-pipeline-split", [o] { o->account_for_embedding = true; },
      "count the input embedding as one layer when the layers are divided over the PP x VPP chunks "
      "(Megatron-Core; default: offered where the framework runs it and no other split fits)");
  app.add_flag_callback(
      "--account-for-loss-in-pipeline-split", [o] { o->account_for_loss = true; },
      "count the loss (final norm, LM head, cross-entropy) as one layer of the pipeline split "
      "(Megatron-Core)");
  app.add_option("--zero", o->zero, "fix ZeRO stage (0-3)");
  app.add_option("--zero-shard", o->zero_shard,
                 "fix the ZeRO shard group (hybrid sharding, HSDP): states sharded over this many of the DP x CP "
                 "ranks, replicated across the groups; 0 = the whole DP x CP group (default: searched)");
  app.add_option("--micro-batch", o->micro_batch, "fix micro-batch size (sequences)");
  app.add_option("--global-batch", o->global_batch, "global batch in sequences (default 512)");
  app.add_option("--seq", o->seq, "sequence length in tokens (default 2048)");
  app.add_option("--recompute", o->recompute, "fix activation recomputation: none | selective | full")
      ->check(NonEmpty());
  // Two flags, not one optional<bool> flag: CLI11 2.1 sets an optional<bool>
  // flag to false when it is absent, which silently removed SP from the search.
  CLI::Option* sp = app.add_flag_callback("--sp", [o] { o->sequence_parallel = true; },
                                          "fix sequence parallel on (default: searched)");
  CLI::Option* no_sp = app.add_flag_callback("--no-sp", [o] { o->sequence_parallel = false; },
                                             "fix sequence parallel off (default: searched)");
  sp->excludes(no_sp);
  app.add_option("--framework", o->framework,
                 "implementation the plan is predicted for: p3d (default) | megatron-core | nemo | torchtitan | "
                 "deepspeed | ... (--list-frameworks) or a profile file (docs/frameworks.md)")
      ->check(NonEmpty());
  app.add_option("--attention", o->attention,
                 "attention core: fused (flash attention) | unfused (S x S scores); default: the framework's")
      ->check(NonEmpty());
  app.add_option("--offload", o->offload, "fix CPU offload: none | optimizer (ZeRO>=1) | params (ZeRO-3)")
      ->check(NonEmpty());
  app.add_option("--placement", o->placement,
                 "fix the rank order of the groups: tp-cp-ep-dp-pp (Megatron's default) | tp-pp-dp (Megatron "
                 "--use-tp-pp-dp-mapping: pipeline stages on neighbouring ranks, no CP or EP); default: searched "
                 "where the framework runs both")
      ->check(NonEmpty());
  app.add_option("--grad-dtype", o->grad_dtype,
                 "gradient accumulation dtype: fp32 (18 B/param) | bf16 (16 B/param); default: the framework's")
      ->check(NonEmpty());
  app.add_option("--fp8", o->fp8,
                 "FP8 recipe of the linear layers' GEMMs (Transformer Engine): off (default) | delayed | tensorwise | "
                 "blockwise | mxfp8 (Blackwell)")
      ->check(NonEmpty());
  app.add_flag("--ep-a2a-overlap", o->ep_a2a_overlap,
               "MoE: hide the expert-parallel all-to-alls under another micro-batch's compute in the 1F1B "
               "steady state (Megatron-Core --overlap-moe-expert-parallel-comm); default off");
  app.add_flag("--ep-deepep", o->ep_deepep,
               "MoE: dispatch tokens with DeepEP, once per destination node across nodes and fanned out over "
               "NVLink inside it (Megatron-Core --moe-token-dispatcher-type flex --moe-enable-deepep); default "
               "off: the all-to-all dispatcher");
  app.add_option("--master-bytes", o->master_bytes, "bytes/param of master weights (default 4 = fp32)");
  app.add_option("--adam-bytes", o->adam_bytes, "bytes/param of Adam moments (default 8 = two fp32)");
  CLI::Option* dropout = app.add_flag_callback("--dropout", [o] { o->dropout = true; },
                                               "train with dropout (its masks are stored activations); default: "
                                               "the framework's (p3d: none)");
  CLI::Option* no_dropout =
      app.add_flag_callback("--no-dropout", [o] { o->dropout = false; }, "train without dropout");
  dropout->excludes(no_dropout);
  app.add_option("--top", o->top, "number of ranked plans to print (default 10)");
  app.add_option("--pick", o->pick, "which ranked plan --explain/--save-plan/--export/--report use (default 1)");
  app.add_flag("--explain", o->explain, "derive the picked plan's memory and time, term by term");
  app.add_option("--claim-step", o->claim_step_s, "check a claimed step time (s) against the FLOP floor");
  CLI::Option* json = app.add_flag("--json", o->json, "print JSON (docs/json-schema.md) instead of the table");
  app.add_option("--save-plan", o->save_plan, "write the picked plan (layout + prediction) for p3d-run --plan")
      ->check(NonEmpty());
  CLI::Option* exp =
      app.add_option("--export", o->export_format,
                     "print the picked plan as: deepspeed | megatron | torchtitan | torchrun | slurm (only that file goes to "
                     "stdout; the table goes to stderr)")
          ->check(NonEmpty());
  exp->excludes(json);
  app.add_option("--report", o->report, "write a self-contained HTML report (charts, timeline)")->check(NonEmpty());
  app.add_flag("--allow-tp-across-nodes", o->allow_tp_across_nodes, "let TP groups span nodes");
  app.add_flag("--runnable", o->runnable,
               "only plans the framework runs today (the table's runs column; p3d: what p3d-run runs)");
  app.add_flag("--list-gpus", o->list_gpus, "list the hardware catalog");
  app.add_flag("--list-models", o->list_models, "list the model zoo");
  app.add_flag("--list-frameworks", o->list_frameworks, "list the framework profiles");
}

StatusOr<PlanCliOptions> ParsePlanFlags(int argc, const char* const* argv) {
  PlanCliOptions o;
  CLI::App app;
  AddPlanFlags(app, &o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return Status::InvalidArgument(e.what());
  }
  return o;
}

}  // namespace p3d
