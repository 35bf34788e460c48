// p3d-calibrate: measure the GPUs at hand and write the hardware profile the
// simulator plans with (docs/calibration.md).
//
//   p3d-calibrate --out profile.json                      # every visible GPU
//   p3d-calibrate --nproc 1 --models gpt-1.3b --micro-batches 4 --out p.json
//
// Measures, checking every result while timing it: runtime memory (context,
// cuBLASLt, NCCL communicators step by step, allocation overhead), HBM
// bandwidth, the linear-layer GEMMs of the given models in the executor's
// three layouts plus a size sweep, the attention core at the models' shapes,
// the optimizer step, the CPU AdamW of optimizer offload, and (2+ GPUs) NCCL all-reduce / reduce-scatter /
// all-gather / send-recv across message sizes and the compute a concurrent
// all-reduce costs. Bounded by --max-seconds.
// Started without RANK it runs itself as --nproc ranks on this node; rank 0
// measures the GEMMs and HBM and writes the file. Exit 0 ok, 2 bad input,
// 4 a measurement failed or gave a wrong result.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <set>

#include "common/input_file.h"
#include "common/tool_main.h"
#include "executor/calibrate/cpu_adam_probe.h"
#include "executor/calibrate/probes.h"
#include "executor/comm/process_groups.h"
#include "executor/host/spawn.h"
#include "executor/metrics.h"
#include "executor/param_layout.h"
#include "models/zoo.h"
#include "common/plan.h"

namespace p3d {
namespace {

struct Options {
  int nproc = 0;
  std::vector<std::string> models = {"gpt-1.3b", "gpt2-medium"};
  std::vector<int64_t> micro_batches = {1, 2, 4};
  std::vector<int> tps = {1, 2};
  std::vector<int64_t> seqs = {2048};
  int64_t logits_chunk = 1024;  // p3d-run's default loss chunk (executor/memory_plan.h)
  std::vector<int64_t> sweep = {256, 512, 1024, 2048, 4096, 8192};
  std::vector<double> comm_bytes = {1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20};
  double hbm_bytes = 512 << 20;
  int64_t optimizer_params = 256 << 20;
  int64_t cpu_adam_params = 128 << 20;
  double max_seconds = 150;
  std::string base_gpu;
  std::string out = "profile.json";
  std::string command;
};

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Calls visit(model, micro-batch, seq, tp) for every plan point the options
// name: each model x seq x micro-batch x TP.
template <typename Visit>
Status ForEachPlanPoint(const Options& o, Visit&& visit) {
  for (const std::string& name : o.models) {
    P3D_ASSIGN_OR_RETURN(ModelSpec model, ResolveModel(name));
    for (int64_t seq : o.seqs)
      for (int64_t b : o.micro_batches)
        for (int tp : o.tps) visit(model, b, seq, tp);
  }
  return Status::Ok();
}

StatusOr<std::vector<GemmShapeToMeasure>> Shapes(const Options& o) {
  std::vector<GemmShapeToMeasure> shapes;
  std::set<std::tuple<int64_t, int64_t, int64_t>> seen;
  auto add = [&](LinearGemmShape s, const char* source) {
    if (seen.insert({s.m, s.n, s.k}).second) shapes.push_back({std::move(s), source});
  };
  auto add_plan_point = [&](const ModelSpec& model, int64_t b, int64_t seq, int tp) {
    if (model.heads % tp || model.ffn % tp) return;
    for (LinearGemmShape s :
         LinearGemmShapes(model, b * seq, tp, o.logits_chunk, PaddedVocab(model.vocab))) {
      s.label = fmt::format("{} T={} TP={}", s.label, b * seq, tp);
      add(s, "plan");
    }
  };
  P3D_RETURN_IF_ERROR(ForEachPlanPoint(o, add_plan_point));
  for (int64_t n : o.sweep) add({fmt::format("sweep {}^3", n), n, n, n}, "sweep");
  return shapes;
}

StatusOr<size_t> FreeBytes() {
  size_t free = 0, total = 0;
  P3D_CAL_CUDA(cudaMemGetInfo(&free, &total));
  return free;
}

// Attention-core shapes of the plans: every model x micro-batch x seq x TP
// (heads and kv heads split over TP), in the executor's default causal blocks.
StatusOr<std::vector<AttentionShapeToMeasure>> AttentionShapes(const Options& o) {
  std::vector<AttentionShapeToMeasure> shapes;
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>> seen;
  auto add_plan_point = [&](const ModelSpec& model, int64_t b, int64_t seq, int tp) {
    if (model.heads % tp || model.kv_heads % tp) return;
    AttentionCoreShape sh{b, seq, model.heads / tp, model.kv_heads / tp, model.head_dim(),
                          DefaultAttentionBlocks(seq)};
    if (!seen.insert({sh.batch, sh.seq, sh.heads, sh.kv_heads, sh.head_dim}).second) return;
    shapes.push_back({fmt::format("{} B={} S={} TP={}", model.name, b, seq, tp), sh});
  };
  P3D_RETURN_IF_ERROR(ForEachPlanPoint(o, add_plan_point));
  return shapes;
}

// NCCL memory, step by step as a run meets it (NCCL connects lazily):
//   first  ProcessGroups::Create as p3d-run makes it (world + TP/DP/PP/MP
//          splits) and one all-reduce on the DP group: NCCL's setup and the
//          first connected communicator;
//   split  one all-reduce on the world (another communicator, same ranks);
//   p2p    one send/recv ring on the DP group (pipeline connections).
// Then the collectives and the interference probe over the world.
StatusOr<nlohmann::json> CalibrateComm(const LaunchInfo& launch, int devices, const Options& o,
                                       const Progress& progress, cudaStream_t stream) {
  if (launch.world_size > devices)
    return Status::InvalidArgument(fmt::format(
        "rule single-node: {} ranks but {} GPUs on this host; p3d-calibrate measures one node",
        launch.world_size, devices));
  P3D_ASSIGN_OR_RETURN(size_t before, FreeBytes());
  P3D_ASSIGN_OR_RETURN(RankGrid grid, RankGrid::Create(1, launch.world_size, 1, devices));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroups> groups,
                       ProcessGroups::Create(launch, grid, CommOptions{}));
  const std::vector<double> small = {4096.0 * 4 * launch.world_size};
  Communicator& dp = groups->group(GroupKind::kData);
  P3D_RETURN_IF_ERROR(ProbeCollectives(dp, small, progress, stream, {"all-reduce"}).status());
  P3D_ASSIGN_OR_RETURN(size_t after_first, FreeBytes());
  P3D_RETURN_IF_ERROR(
      ProbeCollectives(groups->world(), small, progress, stream, {"all-reduce"}).status());
  P3D_ASSIGN_OR_RETURN(size_t after_split, FreeBytes());
  P3D_RETURN_IF_ERROR(ProbeCollectives(dp, small, progress, stream, {"send-recv"}).status());
  P3D_ASSIGN_OR_RETURN(size_t after_p2p, FreeBytes());
  auto diff = [](size_t a, size_t b) {
    return std::max(0.0, static_cast<double>(a) - static_cast<double>(b));
  };
  const double first = diff(before, after_first), split = diff(after_first, after_split),
               p2p = diff(after_split, after_p2p);
  if (launch.rank == 0)
    progress.Say(fmt::format("nccl: first communicator {:.0f} MiB (with NCCL setup), one more "
                             "{:.0f} MiB, send/recv connections {:.0f} MiB",
                             first / 1048576, split / 1048576, p2p / 1048576));
  P3D_ASSIGN_OR_RETURN(nlohmann::json samples,
                       ProbeCollectives(groups->world(), o.comm_bytes, progress, stream));
  P3D_ASSIGN_OR_RETURN(nlohmann::json interference,
                       ProbeInterference(groups->world(), progress, stream));
  return nlohmann::json{{"nccl_first_bytes", first},
                        {"nccl_split_bytes", split},
                        {"nccl_p2p_bytes", p2p},
                        {"collectives", samples},
                        {"interference", interference}};
}

void PrintSummary(const ClusterSpec& c, std::ostream& out) {
  out << fmt::format("profile for {} ({}): {}\n", c.gpu.name, c.gpu.description, c.source);
  out << "  GEMM efficiency (FLOPs of one GEMM -> fraction of " << c.gpu.peak_flops / 1e12
      << " TFLOP/s):\n";
  for (const auto& p : c.gpu.gemm_efficiency)
    out << fmt::format("    {:10.3g}  {:.3f}\n", p.flops, p.efficiency);
  out << fmt::format("  HBM efficiency {:.3f} of {:.0f} GB/s\n", c.gpu.hbm_efficiency,
                     c.gpu.hbm_bytes_per_s / 1e9);
  const RuntimeMemory& rt = c.gpu.runtime;
  out << fmt::format(
      "  memory {:.0f} MiB; runtime: context {:.0f} MiB, NCCL first communicator {:.0f} MiB, "
      "each further {:.0f} MiB, send/recv {:.0f} MiB, allocator fraction {:.4f}\n",
      c.gpu.memory_bytes / 1048576, rt.cuda_context_bytes / 1048576,
      NcclBytes(rt, 1, false) / 1048576, rt.nccl_per_comm_bytes / 1048576,
      rt.nccl_p2p_bytes / 1048576, rt.allocator_fraction);
  out << "  attention core (head dim, forward FLOPs -> forward / probs / backward efficiency):\n";
  for (const auto& p : c.gpu.attention_efficiency)
    out << fmt::format("    HD {:3.0f} {:10.3g}  {:.3f} / {:.3f} / {:.3f}\n", p.head_dim, p.flops,
                       p.forward, p.probs, p.backward);
  out << fmt::format("  optimizer step {:.3f} of HBM; compute lost per second of hidden "
                     "collective: {:.2f} (GEMM), {:.2f} (memory-bound)\n",
                     c.gpu.optimizer_efficiency, c.gpu.overlap_slowdown_gemm,
                     c.gpu.overlap_slowdown_memory);
  const LinkSpec& intra = c.network.front().link;  // the innermost tier: what one host measures
  out << fmt::format("  intra-node link {}: efficiency {:.3f} of {:.0f} GB/s, latency {:.2f} us\n",
                     intra.name, intra.efficiency, intra.bytes_per_s / 1e9, intra.latency_s * 1e6);
}

Status RunRank(const Options& o) {
  Progress progress(o.max_seconds);
  P3D_ASSIGN_OR_RETURN(LaunchInfo launch, ParseLaunchEnv(ProcessEnv()));
  int devices = 0;
  P3D_CAL_CUDA(cudaGetDeviceCount(&devices));
  P3D_CAL_CUDA(cudaSetDevice(launch.local_rank));
  cudaDeviceProp prop;
  P3D_CAL_CUDA(cudaGetDeviceProperties(&prop, launch.local_rank));
  std::string base_name = o.base_gpu;
  if (base_name.empty()) {
    StatusOr<std::string> id = CatalogGpuForDevice(prop.name);
    if (!id.ok())
      return Status::InvalidArgument(
          fmt::format("'{}' is not in the catalog: pass --base-gpu NAME (p3d-plan --list-gpus) for "
                      "its datasheet "
                      "figures",
                      prop.name));
    base_name = *id;
  }
  P3D_ASSIGN_OR_RETURN(ClusterSpec base, CatalogCluster(base_name));
  if (launch.rank == 0)
    progress.Say(fmt::format("{} rank(s); rank 0 on {} (catalog {}), budget {:.0f} s",
                             launch.world_size, prop.name, base_name, o.max_seconds));
  cudaStream_t stream;
  P3D_CAL_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  P3D_ASSIGN_OR_RETURN(nlohmann::json runtime, ProbeRuntime(progress));
  nlohmann::json collectives = nlohmann::json::array(), interference;
  if (launch.world_size > 1) {
    P3D_ASSIGN_OR_RETURN(nlohmann::json comm, CalibrateComm(launch, devices, o, progress, stream));
    for (const char* key : {"nccl_first_bytes", "nccl_split_bytes", "nccl_p2p_bytes"})
      runtime[key] = comm[key];
    collectives = comm["collectives"];
    interference = comm["interference"];
  }
  if (launch.rank != 0) return Status::Ok();

  P3D_ASSIGN_OR_RETURN(nlohmann::json hbm, ProbeHbm(o.hbm_bytes, progress, stream));
  P3D_ASSIGN_OR_RETURN(std::vector<GemmShapeToMeasure> shapes, Shapes(o));
  int skipped = 0, attention_skipped = 0;
  P3D_ASSIGN_OR_RETURN(nlohmann::json gemm, ProbeGemms(shapes, progress, stream, &skipped));
  // FP8 tensor cores: compute capability 8.9 (Ada) and up.
  nlohmann::json fp8_gemm;
  int fp8_skipped = 0;
  if (prop.major * 10 + prop.minor >= 89) {
    P3D_ASSIGN_OR_RETURN(fp8_gemm, ProbeFp8Gemms(shapes, progress, stream, &fp8_skipped));
  }
  P3D_ASSIGN_OR_RETURN(nlohmann::json optimizer,
                       ProbeOptimizer(o.optimizer_params, progress, stream));
  progress.Say(fmt::format("cpu adam: all hardware threads, {} M parameters ({:.1f} GB host)",
                           o.cpu_adam_params >> 20, o.cpu_adam_params * 18 / 1e9));
  P3D_ASSIGN_OR_RETURN(nlohmann::json cpu_adam,
                       ProbeCpuAdam(o.cpu_adam_params, /*threads=*/0, /*max_seconds=*/10.0));
  progress.Say(fmt::format("cpu adam: {:.2f} G params/s (update; the clip norm runs on the GPU)",
                           cpu_adam.value("params_per_s", 0.0) / 1e9));
  P3D_ASSIGN_OR_RETURN(nlohmann::json offload_step,
                       ProbeOffloadStep(o.cpu_adam_params, progress, stream));
  P3D_ASSIGN_OR_RETURN(std::vector<AttentionShapeToMeasure> cores, AttentionShapes(o));
  P3D_ASSIGN_OR_RETURN(nlohmann::json attention,
                       ProbeAttention(cores, progress, stream, &attention_skipped));
  int nccl = 0;
  ncclGetVersion(&nccl);
  int runtime_version = 0;
  cudaRuntimeGetVersion(&runtime_version);
  nlohmann::json calibration = {{"card", prop.name},
                                {"catalog_gpu", base_name},
                                {"driver", DriverVersion()},
                                {"cuda_runtime", runtime_version},
                                {"nccl", nccl},
                                {"date", UtcNow()},
                                {"gpus", launch.world_size},
                                {"command", o.command},
                                {"seconds", progress.elapsed_s()},
                                {"gemm_shapes_skipped", skipped},
                                {"attention_shapes_skipped", attention_skipped},
                                {"gemm", gemm},
                                {"attention", attention},
                                {"optimizer", optimizer},
                                {"cpu_adam", cpu_adam},
                                {"offload_step", offload_step},
                                {"hbm", hbm},
                                {"runtime", runtime},
                                {"collectives", collectives}};
  if (!interference.is_null()) calibration["interference"] = interference;
  if (!fp8_gemm.is_null()) {
    calibration["fp8_gemm"] = fp8_gemm;
    calibration["fp8_gemm_shapes_skipped"] = fp8_skipped;
  }
  P3D_ASSIGN_OR_RETURN(ClusterSpec applied, ApplyCalibration(base, calibration, o.out));
  P3D_RETURN_IF_ERROR(WriteFileAtomic(o.out, ProfileToJson(applied, calibration) + "\n", "--out profile"));
  PrintSummary(applied, std::cout);
  progress.Say(fmt::format("wrote {}", o.out));
  cudaStreamDestroy(stream);
  return Status::Ok();
}

}  // namespace
}  // namespace p3d

int main(int argc, char** argv) {
  p3d::Options o;
  CLI::App app{
      "p3d-calibrate: measure this node's GPUs and write the hardware profile "
      "p3d-plan --profile uses (docs/calibration.md)"};
  app.add_option("--nproc", o.nproc,
                 "ranks to start on this node when RANK is unset (0: all GPUs)");
  app.add_option("--models", o.models, "models whose GEMM shapes to measure")->delimiter(',');
  app.add_option("--micro-batches", o.micro_batches, "micro-batch sizes B of those shapes")
      ->delimiter(',');
  app.add_option("--tp", o.tps, "tensor-parallel degrees of those shapes")->delimiter(',');
  app.add_option("--seq", o.seqs, "sequence lengths S of those shapes")->delimiter(',');
  app.add_option("--logits-chunk", o.logits_chunk,
                 "tokens per LM-head GEMM (p3d-run's loss chunk)");
  app.add_option("--sweep", o.sweep, "square GEMM sizes n (n x n x n) extending the table")
      ->delimiter(',');
  app.add_option("--comm-bytes", o.comm_bytes, "collective message sizes, bytes")->delimiter(',');
  app.add_option("--hbm-bytes", o.hbm_bytes,
                 "buffer size of the bandwidth probe, bytes (>= 256 MiB: above every catalog card's L2)")
      ->check(CLI::Range(double(256 << 20), double(int64_t{1} << 36)));
  app.add_option("--optimizer-params", o.optimizer_params,
                 "parameters of the optimizer-step probe (18 bytes each on the GPU)")
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 34));
  app.add_option("--cpu-adam-params", o.cpu_adam_params,
                 "parameters of the CPU AdamW and offloaded-step probes (18 bytes each in host "
                 "memory)")
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 34));
  app.add_option("--max-seconds", o.max_seconds, "time budget; GEMM shapes past it are skipped");
  app.add_option("--base-gpu", o.base_gpu,
                 "catalog GPU whose datasheet figures apply (default: this card's)");
  app.add_option("--out", o.out, "profile file to write");
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);

  const auto launch = p3d::ParseLaunchEnv(p3d::ProcessEnv());
  if (launch.ok() && launch->launcher == p3d::Launcher::kNone) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      std::cerr << "p3d-calibrate: no GPU visible\n";
      return 4;
    }
    const int nproc = o.nproc > 0 ? o.nproc : devices;
    if (nproc > 1) {
      const p3d::Status s = p3d::SpawnSelf(
          nproc, std::vector<std::string>(argv + 1, argv + argc),
          std::chrono::milliseconds(static_cast<int64_t>((o.max_seconds + 120) * 1000)));
      if (!s.ok()) std::cerr << "p3d-calibrate: " << s.ToString() << "\n";
      return s.ok() ? 0 : 4;
    }
  }
  const p3d::Status s = p3d::RunRank(o);
  if (!s.ok()) {
    std::cerr << "p3d-calibrate: " << s.ToString() << "\n";
    return s.code() == p3d::Status::Code::kInvalidArgument ? 2 : 4;
  }
  return 0;
}
