// p3d-plan: which DP/TP/PP/ZeRO layout should I run, will it fit, how fast?
//
//   p3d-plan --model 70B --gpus 64 --mem 80
//
// Front end only: flag parsing, printing and exit codes (0 ok, 2 bad input,
// 3 nothing legal or nothing fits). All logic is in planner/plan_cli.h.
#include <CLI/CLI.hpp>

#include <iostream>

#include "planner/plan_cli.h"

int main(int argc, char** argv) {
  p3d::PlanCliOptions o;
  CLI::App app{"p3d-plan: rank every legal DP x TP x PP x ZeRO plan of a model on a cluster.\n"
               "All figures printed are predictions (docs/metrics.md defines each)."};
  app.add_option("--model,-m", o.model, "zoo id (--list-models), size (7B, 70B, 175B, any size), or config.json");
  app.add_option("--gpus,-n", o.gpus, "number of GPUs");
  app.add_option("--mem", o.mem_gb, "GPU memory in GB (picks a catalog GPU of that size)");
  app.add_option("--gpu,--hardware", o.gpu, "catalog GPU name (--list-gpus) or a hardware JSON file (docs/hardware.md)");
  app.add_option("--profile", o.profile, "measured hardware profile from p3d-calibrate (docs/calibration.md)");
  app.add_option("--gpus-per-node", o.gpus_per_node, "GPUs per node (default: the GPU's usual node)");
  app.add_option("--dp", o.dp, "fix data-parallel degree");
  app.add_option("--tp", o.tp, "fix tensor-parallel degree");
  app.add_option("--pp", o.pp, "fix pipeline-parallel degree");
  app.add_option("--vpp", o.vpp, "fix virtual pipeline stages per rank (interleaved 1F1B when > 1)");
  app.add_option("--zero", o.zero, "fix ZeRO stage (0-3)");
  app.add_option("--micro-batch", o.micro_batch, "fix micro-batch size (sequences)");
  app.add_option("--global-batch", o.global_batch, "global batch in sequences (default 512)");
  app.add_option("--seq", o.seq, "sequence length in tokens (default 2048)");
  app.add_option("--recompute", o.recompute, "fix activation recomputation: none | selective | full");
  app.add_flag("--sp,!--no-sp", o.sequence_parallel, "fix sequence parallel on (--sp) or off (--no-sp)");
  app.add_option("--attention", o.attention,
                 "attention core: fused (cuDNN flash attention, default) | unfused (S x S scores)");
  app.add_option("--offload", o.offload, "fix CPU offload: none | optimizer (ZeRO>=1) | params (ZeRO-3)");
  app.add_option("--grad-dtype", o.grad_dtype, "gradient accumulation dtype: fp32 (18 B/param) | bf16 (16 B/param)");
  app.add_option("--master-bytes", o.master_bytes, "bytes/param of master weights (default 4 = fp32)");
  app.add_option("--adam-bytes", o.adam_bytes, "bytes/param of Adam moments (default 8 = two fp32)");
  app.add_flag("--dropout", o.dropout, "count dropout masks in activation memory (p3d trains without dropout)");
  app.add_option("--top", o.top, "number of ranked plans to print (default 10)");
  app.add_option("--pick", o.pick, "which ranked plan --explain/--save-plan/--export/--report use (default 1)");
  app.add_flag("--explain", o.explain, "derive the picked plan's memory and time, term by term");
  app.add_option("--claim-step", o.claim_step_s, "check a claimed step time (s) against the FLOP floor");
  app.add_flag("--json", o.json, "print JSON (docs/json-schema.md) instead of the table");
  app.add_option("--save-plan", o.save_plan, "write the picked plan (layout + prediction) for p3d-run --plan");
  app.add_option("--export", o.export_format, "print the picked plan as: deepspeed | megatron | torchrun | slurm");
  app.add_option("--report", o.report, "write a self-contained HTML report (charts, timeline)");
  app.add_flag("--allow-tp-across-nodes", o.allow_tp_across_nodes, "let TP groups span nodes");
  app.add_flag("--list-gpus", o.list_gpus, "list the hardware catalog");
  app.add_flag("--list-models", o.list_models, "list the model zoo");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; a malformed flag or value: 2 (CLI11 names it)
  }
  p3d::Status s = p3d::RunPlanCli(o, std::cout, std::cerr);
  if (!s.ok()) {
    std::cerr << "p3d-plan: " << s.ToString() << "\n";
    return s.code() == p3d::Status::Code::kInfeasible ? 3 : 2;
  }
  return 0;
}
