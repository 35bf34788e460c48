// p3d-run: train a GPT-2 or Llama style model on one GPU and measure it.
//
//   p3d-run --model gpt-1.3b --micro-batch 4 --seq 2048 --steps 20 --json run.json
//
// Front end only: flag parsing, printing and exit codes (0 ok, 2 bad input,
// 3 does not fit, 4 GPU/runtime failure). The loop is executor/trainer.h; every
// printed figure is defined in docs/executor.md.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>

#include "executor/run_report.h"
#include "executor/trainer.h"
#include "models/zoo.h"

namespace {

int ExitCode(const p3d::Status& s) {
  switch (s.code()) {
    case p3d::Status::Code::kInfeasible:
      return 3;
    case p3d::Status::Code::kInternal:
      return 4;
    default:
      return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  p3d::TrainOptions o;
  std::string model_arg, recompute = "none", json_path;
  CLI::App app{
      "p3d-run: train a model on one GPU; print loss per step, then step time, "
      "tokens/s, TFLOP/s, MFU and memory (docs/executor.md defines each)."};
  app.add_option("--model,-m", model_arg, "zoo id, size (1.3B) or model file (config.json)")
      ->required();
  app.add_option("--micro-batch", o.micro_batch, "sequences per micro-batch (B)");
  app.add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step");
  app.add_option("--seq", o.seq, "tokens per sequence (S)");
  app.add_option("--steps", o.steps, "optimizer steps to run");
  app.add_option("--warmup", o.warmup, "steps excluded from the timing statistics");
  app.add_option("--recompute", recompute, "activation recomputation: none | selective | full");
  app.add_option("--seed", o.seed, "initialisation and synthetic-data seed");
  app.add_option("--lr", o.adam.lr, "AdamW learning rate (constant)");
  app.add_option("--weight-decay", o.adam.weight_decay,
                 "AdamW decoupled weight decay (2-D tensors)");
  app.add_option("--beta1", o.adam.beta1, "AdamW beta1");
  app.add_option("--beta2", o.adam.beta2, "AdamW beta2");
  app.add_option("--adam-eps", o.adam.eps, "AdamW epsilon");
  app.add_option("--clip", o.max_grad_norm, "clip the global gradient norm to this (<= 0: off)");
  app.add_option("--logits-chunk", o.logits_chunk,
                 "tokens per fused cross-entropy chunk (0: 1024)");
  app.add_option("--data", o.data_path, "flat binary token file (default: synthetic tokens)");
  app.add_option("--data-dtype", o.data_dtype, "token width of --data: uint16 | uint32");
  app.add_option("--json", json_path, "write the run's results as JSON");
  app.add_option("--save", o.save_path, "write a checkpoint after the last step");
  app.add_option("--load", o.load_path, "continue from a checkpoint");
  app.add_option("--dump", o.dump_dir,
                 "write weights, tokens, logits, grads and losses for "
                 "tests/executor/reference.py");
  app.add_flag("--profile", o.profile,
               "time one extra step by phase (GEMM, attention, other, optimizer)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto fail = [](const p3d::Status& s) {
    std::cerr << "p3d-run: " << s.ToString() << "\n";
    return ExitCode(s);
  };
  p3d::StatusOr<p3d::ModelSpec> model = p3d::ResolveModel(model_arg);
  if (!model.ok()) return fail(model.status());
  o.model = *model;
  p3d::StatusOr<p3d::Recompute> rc = p3d::ParseRecompute(recompute);
  if (!rc.ok()) return fail(rc.status());
  o.recompute = *rc;

  p3d::StatusOr<p3d::TrainResult> result =
      p3d::Train(o, [](const p3d::StepRecord& s) { std::cout << p3d::FormatStep(s) << std::endl; });
  if (!result.ok()) return fail(result.status());
  std::cout << p3d::FormatSummary(o, *result);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << p3d::TrainResultToJson(o, *result).dump(2) << "\n";
    if (!out) return fail(p3d::Status::IoError("cannot write --json file '" + json_path + "'"));
  }
  return 0;
}
