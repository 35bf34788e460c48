// p3d-run: train a GPT-2 or Llama style model on one GPU or data-parallel on
// several (one process per GPU) and measure it.
//
//   p3d-run --model gpt-1.3b --micro-batch 4 --seq 2048 --steps 20 --json run.json
//   p3d-run --nproc 2 --dp 2 --zero 1 --model gpt-1.3b ...   (spawns 2 local ranks)
//   torchrun/mpirun/srun ... p3d-run --dp 8 ...              (one rank per process)
//   p3d-run --nproc 2 --plan plan.json                       (a p3d-plan --save-plan file)
//   p3d-run --model 5B --zero 1 --offload optimizer ...      (AdamW state on the host)
//
// Front end only: flag parsing, bootstrap, printing (rank 0) and exit codes
// (0 ok, 2 bad input, 3 does not fit, 4 no GPU or a GPU/runtime/communication
// failure; common/tool_main.h).
// The loop is executor/trainer.h; every printed figure is defined in
// docs/executor.md.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include "common/input_file.h"
#include "common/tool_main.h"
#include "executor/comm/bounded_abort.h"
#include "executor/comm/process_groups.h"
#include "executor/host/launch.h"
#include "executor/host/pipeline_program.h"
#include "executor/host/spawn.h"
#include "executor/run_report.h"
#include "executor/train_options.h"
#include "executor/trainer.h"
#include "models/zoo.h"
#include "simulator/framework_profile.h"
#include "simulator/saved_plan.h"

namespace {

using Clock = std::chrono::steady_clock;

int ExitCode(const p3d::Status& s) {
  switch (s.code()) {
    case p3d::Status::Code::kInfeasible:
      return p3d::kExitInfeasible;
    case p3d::Status::Code::kInternal:
    case p3d::Status::Code::kIoError:
    case p3d::Status::Code::kUnavailable:
      return p3d::kExitRuntime;
    default:
      return p3d::kExitBadInput;
  }
}

// A usable CUDA device, or a message a user can act on (no driver, no GPU).
p3d::Status CheckGpuPresent() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaSuccess && devices > 0) return p3d::Status::Ok();
  return p3d::Status::Unavailable(
      std::string("no usable NVIDIA GPU on this machine (CUDA reports ") +
      (e == cudaSuccess ? "0 devices" : cudaGetErrorName(e)) +
      "): p3d-run trains on GPUs; p3d-plan answers the same layout questions without one");
}

// --fault-inject RANK:STEP:exit|hang, for the failure tests.
struct Fault {
  int rank = -1;
  int64_t step = -1;
  std::string kind;
};

p3d::StatusOr<Fault> ParseFault(const std::string& text) {
  Fault f;
  const size_t a = text.find(':'), b = text.find(':', a == std::string::npos ? a : a + 1);
  if (a == std::string::npos || b == std::string::npos)
    return p3d::Status::InvalidArgument("--fault-inject: expected RANK:STEP:exit|hang, got '" +
                                        text + "'");
  try {
    f.rank = std::stoi(text.substr(0, a));
    f.step = std::stoll(text.substr(a + 1, b - a - 1));
  } catch (const std::exception&) {
    return p3d::Status::InvalidArgument("--fault-inject: RANK and STEP must be integers: '" + text +
                                        "'");
  }
  f.kind = text.substr(b + 1);
  if (f.kind != "exit" && f.kind != "hang")
    return p3d::Status::InvalidArgument("--fault-inject: kind must be exit or hang, got '" +
                                        f.kind + "'");
  return f;
}

// Progress deadline of a multi-rank run: when no step finishes within
// `limit` (p3d::ProgressDeadlineFor: longer than the watchdog's bound, so a
// hung collective is reported by the watchdog first; this catches a rank
// blocked outside a watchdog-polled wait, e.g. in a copy queued behind a
// collective that never completes), abort every communicator so that the
// blocked calls fail, and end the process if even that does not unblock it.
class ProgressDeadline {
 public:
  ProgressDeadline(p3d::ProcessGroups* groups, int rank, std::chrono::milliseconds limit)
      : groups_(groups),
        rank_(rank),
        limit_(limit),
        last_(Clock::now().time_since_epoch().count()) {
    thread_ = std::thread([this] { Watch(); });
  }
  ~ProgressDeadline() {
    done_ = true;
    thread_.join();
  }
  void Beat() { last_ = Clock::now().time_since_epoch().count(); }

 private:
  void Watch() {
    while (!done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const auto idle = Clock::now() - Clock::time_point(Clock::duration(last_.load()));
      if (idle < limit_) continue;
      const std::string reason = "no training step finished within " +
                                 std::to_string(limit_.count() / 1000) + " s (progress deadline)";
      std::fprintf(stderr, "p3d-run rank %d: %s; aborting every communicator\n", rank_,
                   reason.c_str());
      (void)groups_->AbortAll(reason);
      for (int i = 0; i < 150 && !done_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (done_) return;
      std::fprintf(stderr, "p3d-run rank %d: still blocked 15 s after the abort; exiting\n", rank_);
      std::_Exit(4);
    }
  }
  p3d::ProcessGroups* groups_;
  int rank_;
  std::chrono::milliseconds limit_;
  std::atomic<Clock::rep> last_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int Run(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  p3d::TrainOptions o;
  p3d::Plan& plan = o.plan;
  std::string model_arg, recompute = "none", json_path, plan_path, fault_arg, offload = "none";
  std::string attention = "fused";
  std::string gemm_epilogues = "off";
  double bucket_mb = p3d::kDefaultGradBucketBytes / 1e6;
  int nproc = 1;
  double nccl_timeout_s = 300;
  bool force = false;
  CLI::App app{
      "p3d-run: train a model on one GPU or data-parallel on several (one process per GPU); "
      "print loss per step, then step time, tokens/s, TFLOP/s, MFU and memory "
      "(docs/executor.md defines each)."};
  app.add_option("--model,-m", model_arg, "zoo id, size (1.3B) or model file (config.json)");
  app.add_option("--plan", plan_path,
                 "run exactly this saved plan (p3d-plan --save-plan): model, batch, seq, layout, "
                 "recompute, ZeRO");
  app.add_flag("--force", force, "run a --plan even when it is predicted not to fit");
  app.add_option("--nproc", nproc, "start this many local ranks (one per GPU) and wait for them");
  app.add_option("--dp", plan.dp, "data-parallel ranks");
  app.add_option("--tp", plan.tp, "tensor-parallel ranks (Megatron column/row-parallel layers)");
  app.add_option("--pp", plan.pp, "pipeline stages (1F1B; interleaved with --vpp > 1)");
  app.add_option("--vpp", plan.vpp,
                 "virtual stages (chunks) per pipeline rank; > 1: interleaved 1F1B");
  app.add_option("--zero", plan.zero, "ZeRO stage over the DP group: 0 | 1 | 2 | 3");
  app.add_flag("--sp", plan.sequence_parallel,
               "sequence parallelism over TP (--tp > 1): norms and residuals on T/TP tokens, "
               "all-gather / reduce-scatter around the TP regions");
  app.add_option("--bucket-mb", bucket_mb,
                 "gradient bucket of the DP reduction, MB (1e6 bytes) of fp32 gradients: "
                 "neighbouring layers reduced together, launched as the backward completes them "
                 "(default: the simulator's 25 M-element bucket)");
  app.add_option("--offload", offload,
                 "CPU offload: none | optimizer (each rank's master weights, Adam moments and "
                 "AdamW step on the host, docs/offload.md)");
  app.add_option("--nccl-timeout-s", nccl_timeout_s,
                 "longest wait for any collective or rendezvous before every rank is aborted");
  app.add_option(
      "--fault-inject", fault_arg,
      "RANK:STEP:exit|hang: that rank exits (or hangs) before that step (failure tests)");
  app.add_option("--micro-batch", plan.micro_batch, "sequences per micro-batch per DP rank (B)");
  app.add_option("--grad-accum", plan.grad_accum,
                 "micro-batches per optimizer step per DP rank (--vpp > 1: a multiple of --pp)");
  app.add_option("--seq", o.seq, "tokens per sequence (S)");
  app.add_option("--steps", o.steps, "optimizer steps to run");
  app.add_option("--warmup", o.warmup, "steps excluded from the timing statistics");
  app.add_option("--recompute", recompute, "activation recomputation: none | selective | full");
  app.add_option("--attention", attention,
                 "attention core: fused (cuDNN flash attention) | unfused (batched GEMMs over "
                 "the S x S scores)");
  app.add_option("--gemm-epilogues", gemm_epilogues,
                 "on: GPT-2's bias+GELU, its gradient and the bias gradients run inside the "
                 "cuBLASLt GEMMs; off (default): as separate kernels")
      ->check(CLI::IsMember({"on", "off"}));
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
  app.add_option("--json", json_path, "write the run's results as JSON (rank 0)");
  app.add_option("--save", o.save_path, "write a checkpoint after the last step");
  app.add_option("--load", o.load_path, "continue from a checkpoint");
  app.add_option("--dump", o.dump_dir,
                 "write weights, tokens, logits, grads and losses for "
                 "tests/executor/reference.py");
  app.add_flag("--profile", o.profile,
               "time one extra step by phase (GEMM, attention, other, optimizer)");
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  auto fail = [](const p3d::Status& s, int rank = 0) {
    std::cerr << "p3d-run" << (rank > 0 ? " rank " + std::to_string(rank) : std::string()) << ": "
              << s.ToString() << "\n";
    return ExitCode(s);
  };
  p3d::StatusOr<p3d::LaunchInfo> launch = p3d::ParseLaunchEnv(p3d::ProcessEnv());
  if (!launch.ok()) return fail(launch.status());

  // The launcher: start nproc copies of this command as ranks 0..nproc-1.
  if (nproc > 1 && launch->launcher == p3d::Launcher::kNone) {
    const p3d::Status s = p3d::SpawnSelf(nproc, args);
    if (!s.ok()) return fail(s);
    return 0;
  }
  const int rank = launch->rank;
  if (!(bucket_mb > 0) || bucket_mb > 1e12)
    return fail(p3d::Status::InvalidArgument("--bucket-mb " + std::to_string(bucket_mb) +
                                             ": a bucket holds more than 0 and at most 1e12 MB"),
                rank);
  o.grad_bucket_bytes = std::max<int64_t>(1, std::llround(bucket_mb * 1e6));
  o.gemm_epilogues = gemm_epilogues == "on";

  if (!plan_path.empty()) {
    if (!model_arg.empty()) return fail(p3d::Status::InvalidArgument("--plan replaces --model"));
    p3d::StatusOr<p3d::SavedPlan> saved = p3d::LoadSavedPlan(plan_path);
    if (!saved.ok()) return fail(saved.status(), rank);
    p3d::Status fit = p3d::CheckPredictedFit(*saved, force, plan_path);
    if (!fit.ok()) return fail(fit, rank);
    p3d::Status planned =
        p3d::CheckPlannedForExecutor(saved->request.framework, saved->request.training.fp8);
    if (!planned.ok()) return fail(planned, rank);
    p3d::ApplySavedPlan(*saved, &o);
  } else {
    if (model_arg.empty())
      return fail(p3d::Status::InvalidArgument("--model (or --plan) is required"));
    p3d::StatusOr<p3d::ModelSpec> model = p3d::ResolveModel(model_arg);
    if (!model.ok()) return fail(model.status(), rank);
    o.model = *model;
    if (!p3d::ParseRecompute(recompute, &plan.recompute))
      return fail(p3d::Status::InvalidArgument("--recompute '" + recompute +
                                               "' is not one of: none, selective, full"), rank);
    if (!p3d::ParseAttentionImpl(attention, &plan.attention))
      return fail(p3d::Status::InvalidArgument("--attention '" + attention +
                                               "': expected fused | unfused"),
                  rank);
    if (!p3d::ParseOffload(offload, &plan.offload))
      return fail(
          p3d::Status::InvalidArgument("--offload '" + offload + "': expected none | optimizer"),
          rank);
  }
  // The executor-support rules and, with pp > 1, every rank's pipeline
  // program, checked before NCCL starts (train_options.h).
  p3d::Status supported = p3d::CheckRunnable(plan);
  if (!supported.ok()) return fail(supported, rank);
  if (plan.gpus() != launch->world_size)
    return fail(p3d::Status::InvalidArgument(
                    "rule world_size: the layout needs " + std::to_string(plan.gpus()) +
                    " ranks (dp x tp x pp) but the launch has " +
                    std::to_string(launch->world_size) + " (--nproc or the launcher's WORLD_SIZE)"),
                rank);

  // Input is checked first (bad input exits 2 on any machine), then the GPU.
  if (p3d::Status gpu = CheckGpuPresent(); !gpu.ok()) return fail(gpu, rank);
  std::unique_ptr<p3d::ProcessGroups> groups;
  std::unique_ptr<ProgressDeadline> deadline;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(nccl_timeout_s * 1000));
  if (launch->world_size > 1) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < 1) return fail(CheckGpuPresent(), rank);
    int per_node = devices;
    if (auto local = p3d::ProcessEnv().Get("LOCAL_WORLD_SIZE"))
      per_node = std::atoi(local->c_str());
    // The node's cores are shared by its ranks' CPU AdamW.
    o.offload_threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, per_node));
    p3d::StatusOr<p3d::RankGrid> grid =
        p3d::RankGrid::Create(plan.tp, plan.dp, plan.pp, per_node);
    if (!grid.ok()) return fail(grid.status(), rank);
    p3d::CommOptions copt;
    copt.timeout = timeout;
    copt.rendezvous_timeout = timeout;
    // Printed as the watchdog fires (before the aborts, which may block); a
    // rank whose aborts do not return cannot free its memory, so it exits.
    copt.hooks.on_fire = [rank](const std::string& message) {
      std::fprintf(stderr, "p3d-run rank %d: aborting NCCL: %s\n", rank, message.c_str());
    };
    copt.hooks.on_stuck = [rank](const std::string& message) {
      std::fprintf(stderr, "p3d-run rank %d: %s; exiting\n", rank, message.c_str());
      std::_Exit(4);
    };
    p3d::StatusOr<std::unique_ptr<p3d::ProcessGroups>> g =
        p3d::ProcessGroups::Create(*launch, *grid, copt);
    if (!g.ok()) return fail(g.status(), rank);
    groups = std::move(*g);
    o.groups = groups.get();
    deadline = std::make_unique<ProgressDeadline>(
        groups.get(), rank, p3d::ProgressDeadlineFor(timeout, copt.abort_timeout));
  }
  if (!fault_arg.empty()) {
    p3d::StatusOr<Fault> fault = ParseFault(fault_arg);
    if (!fault.ok()) return fail(fault.status(), rank);
    o.before_step = [f = *fault, rank](int64_t step) {
      if (rank != f.rank || step != f.step) return;
      std::fprintf(stderr, "p3d-run rank %d: --fault-inject: %s before step %lld\n", rank,
                   f.kind.c_str(), static_cast<long long>(step));
      if (f.kind == "exit") std::_Exit(13);
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    };
  }

  p3d::StatusOr<p3d::TrainResult> result =
      p3d::Train(o, [rank, &deadline](const p3d::StepRecord& s) {
        if (deadline) deadline->Beat();
        if (rank == 0) std::cout << p3d::FormatStep(s) << std::endl;
      });
  deadline.reset();
  if (!result.ok()) {
    // The error first (the abort may take up to its timeout), then abort so
    // that peers do not wait for this rank until their deadline.
    const int code = fail(result.status(), rank);
    if (groups) (void)groups->AbortAll("rank " + std::to_string(rank) + " failed");
    return code;
  }
  if (rank != 0) return 0;
  std::cout << p3d::FormatSummary(o, *result);
  if (!json_path.empty()) {
    const p3d::Status written =
        p3d::WriteFileAtomic(json_path, p3d::TrainResultToJson(o, *result).dump(2) + "\n", "--json");
    if (!written.ok()) return fail(written);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return p3d::GuardedMain("p3d-run", p3d::kExitRuntime, [&] { return Run(argc, argv); });
}
