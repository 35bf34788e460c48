// p3d-comm-bench: bandwidth of the NCCL collectives the executor uses, in the
// style of nccl-tests: for each operation and size it first checks the result
// against host-computed values, then times `iters` back-to-back calls with
// CUDA events, and prints time, algbw and busbw (defined in docs/comm.md).
//
//   p3d-comm-bench --nproc 2 --min-bytes 8 --max-bytes 1G --factor 2
//
// Started without RANK it runs itself as --nproc ranks on this node (default:
// every visible GPU); under torchrun / mpirun / srun each process is a rank.
// Rows are printed by rank 0; time is the slowest rank's mean per call.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "executor/comm/collective_call.h"
#include "executor/comm/process_groups.h"
#include "executor/host/spawn.h"

namespace p3d {
namespace {

struct Options {
  int nproc = 0;
  uint64_t min_bytes = 8;
  uint64_t max_bytes = uint64_t{1} << 30;
  double factor = 2.0;
  int warmup = 5;
  int iters = 20;
  std::vector<std::string> ops = {"all-reduce", "reduce-scatter", "all-gather", "send-recv"};
  double timeout_s = 120;
  bool blocking = false;
};

#define BENCH_CUDA(expr)                                                             \
  do {                                                                               \
    cudaError_t e_ = (expr);                                                         \
    if (e_ != cudaSuccess) {                                                         \
      return Status::Internal(fmt::format("{}: {}", #expr, cudaGetErrorString(e_))); \
    }                                                                                \
  } while (0)

// Checks one call against the host, then times `iters` calls; returns
// {mean seconds per call on this rank, wrong elements on this rank}.
StatusOr<std::pair<double, double>> Measure(Collective op, Communicator& c, const CollectiveCounts& s, float* send,
                                            float* recv, cudaStream_t stream, const Options& o) {
  std::vector<float> host(s.send);
  for (size_t i = 0; i < s.send; ++i) host[i] = CollectiveInput(c.rank(), i);
  BENCH_CUDA(cudaMemcpy(send, host.data(), s.send * sizeof(float), cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMemset(recv, 0, s.recv * sizeof(float)));
  P3D_RETURN_IF_ERROR(IssueCollective(c, op, s, send, recv, stream));
  P3D_RETURN_IF_ERROR(c.Wait(stream));
  std::vector<float> got(s.recv);
  BENCH_CUDA(cudaMemcpy(got.data(), recv, s.recv * sizeof(float), cudaMemcpyDeviceToHost));
  double wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != CollectiveExpected(op, s, c.rank(), c.size(), i);

  for (int i = 0; i < o.warmup; ++i) P3D_RETURN_IF_ERROR(IssueCollective(c, op, s, send, recv, stream));
  cudaEvent_t start, stop;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  BENCH_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < o.iters; ++i) P3D_RETURN_IF_ERROR(IssueCollective(c, op, s, send, recv, stream));
  BENCH_CUDA(cudaEventRecord(stop, stream));
  P3D_RETURN_IF_ERROR(c.Wait(stream));
  float ms = 0;
  BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return std::make_pair(ms / 1e3 / o.iters, wrong);
}

Status RunRank(const Options& o) {
  P3D_ASSIGN_OR_RETURN(LaunchInfo launch, ParseLaunchEnv(ProcessEnv()));
  int devices = 0;
  BENCH_CUDA(cudaGetDeviceCount(&devices));
  P3D_ASSIGN_OR_RETURN(RankGrid grid, RankGrid::Create(1, launch.world_size, 1, devices));
  CommOptions copt;
  copt.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  copt.blocking = o.blocking;
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroups> pg,
                       ProcessGroups::Create(launch, grid, copt));
  Communicator& world = pg->world();
  const int n = world.size();
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  float *send = nullptr, *recv = nullptr;
  double* stats = nullptr;
  BENCH_CUDA(cudaMalloc(&send, o.max_bytes + 64));
  BENCH_CUDA(cudaMalloc(&recv, o.max_bytes + 64));
  BENCH_CUDA(cudaMalloc(&stats, 2 * sizeof(double)));

  if (launch.rank == 0) {
    cudaDeviceProp prop;
    BENCH_CUDA(cudaGetDeviceProperties(&prop, launch.local_rank));
    int version = 0;
    ncclGetVersion(&version);
    const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
    std::printf(
        "# p3d-comm-bench: %d ranks, %s, NCCL %d, %s communicators, NCCL_NVLS_ENABLE=%s, "
        "float32, sum, %d warmup + %d timed iterations\n",
        n, prop.name, version, o.blocking ? "blocking" : "nonblocking", nvls ? nvls : "(unset)",
        o.warmup, o.iters);
    std::printf("# %-14s %12s %12s %11s %12s %12s %7s\n", "op", "size(B)", "count", "time(us)",
                "algbw(GB/s)", "busbw(GB/s)", "#wrong");
  }
  for (Collective op : kCollectives) {
    const char* name = CollectiveName(op);
    if (std::find(o.ops.begin(), o.ops.end(), name) == o.ops.end()) continue;
    for (double b = static_cast<double>(o.min_bytes); b <= static_cast<double>(o.max_bytes);
         b *= o.factor) {
      const CollectiveCounts s = CountsOf(op, b, n);
      if (s.full == 0) continue;
      P3D_ASSIGN_OR_RETURN(auto result, Measure(op, world, s, send, recv, stream, o));
      // Slowest rank's time, total wrong elements.
      const double local[2] = {result.first, result.second};
      BENCH_CUDA(cudaMemcpy(stats, local, sizeof(local), cudaMemcpyHostToDevice));
      P3D_RETURN_IF_ERROR(world.AllReduce(stats, stats, 1, ncclFloat64, ncclMax, stream));
      P3D_RETURN_IF_ERROR(world.AllReduce(stats + 1, stats + 1, 1, ncclFloat64, ncclSum, stream));
      P3D_RETURN_IF_ERROR(world.Wait(stream));
      double global[2];
      BENCH_CUDA(cudaMemcpy(global, stats, sizeof(global), cudaMemcpyDeviceToHost));
      const double bytes = static_cast<double>(s.full) * sizeof(float);
      const double algbw = bytes / global[0] / 1e9;
      if (launch.rank == 0) {
        std::printf("  %-14s %12.0f %12zu %11.2f %12.2f %12.2f %7.0f\n", name, bytes, s.full,
                    global[0] * 1e6, algbw, algbw * BusFactor(op, n), global[1]);
        std::fflush(stdout);
      }
      if (global[1] != 0) {
        return Status::Internal(
            fmt::format("{} of {} bytes gave {} wrong elements", name, bytes, global[1]));
      }
    }
  }
  cudaFree(send);
  cudaFree(recv);
  cudaFree(stats);
  cudaStreamDestroy(stream);
  return Status::Ok();
}

}  // namespace
}  // namespace p3d

int main(int argc, char** argv) {
  p3d::Options o;
  CLI::App app{"p3d-comm-bench: NCCL collective bandwidth (algbw/busbw, docs/comm.md)"};
  app.add_option("--nproc", o.nproc,
                 "ranks to start on this node when RANK is unset (0: all GPUs)");
  app.add_option("--min-bytes", o.min_bytes, "smallest size, e.g. 8, 1K, 64M")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--max-bytes", o.max_bytes, "largest size, e.g. 1G")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--factor", o.factor, "size multiplier between rows")
      ->check(CLI::Range(1.01, 1e6));
  app.add_option("--warmup", o.warmup, "untimed calls per size");
  app.add_option("--iters", o.iters, "timed calls per size")->check(CLI::PositiveNumber);
  app.add_option("--ops", o.ops, "operations")
      ->delimiter(',')
      ->check(CLI::IsMember({"all-reduce", "reduce-scatter", "all-gather", "send-recv"}));
  app.add_option("--nccl-timeout-s", o.timeout_s, "watchdog deadline for any NCCL wait");
  app.add_flag("--blocking", o.blocking, "blocking NCCL communicators (default: nonblocking)");
  CLI11_PARSE(app, argc, argv);

  const auto launch = p3d::ParseLaunchEnv(p3d::ProcessEnv());
  if (launch.ok() && launch->launcher == p3d::Launcher::kNone) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      std::fprintf(stderr, "p3d-comm-bench: no GPU visible\n");
      return 1;
    }
    const int nproc = o.nproc > 0 ? o.nproc : devices;
    const p3d::Status s = p3d::SpawnSelf(nproc, std::vector<std::string>(argv + 1, argv + argc));
    if (!s.ok()) std::fprintf(stderr, "p3d-comm-bench: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  const p3d::Status s = p3d::RunRank(o);
  if (!s.ok()) std::fprintf(stderr, "p3d-comm-bench: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}
