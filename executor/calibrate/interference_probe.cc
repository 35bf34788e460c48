// Interference probe (probes.h): how much a collective running on a side
// stream slows the compute it hides under, as the executor's DP bucket
// all-reduces run under the backward. A GEMM loop and a memory-bound loop
// (the executor's residual add) are timed alone and with all-reduces of
// gradient-bucket size (fp32) running concurrently; the loops are sized to
// outlast the all-reduces, so the difference is compute time lost.
#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "executor/calibrate/probes.h"
#include "executor/comm/communicator.h"
#include "executor/kernels/elementwise.h"
#include "executor/matmul.h"

namespace p3d {
namespace {

constexpr int64_t kBucketFloats = 64 << 20;  // 256 MiB of fp32 gradient per all-reduce
constexpr int kAllReduces = 4;
constexpr int64_t kGemmN = 8192;             // 8192^3 bf16 GEMM, ~1.1 TFLOP
constexpr int64_t kAddElems = 128 << 20;     // 256 MiB bf16 per residual-add operand
constexpr double kComputeOverComm = 3.0;     // compute loop length / all-reduce time

// Every rank's loop starts after the same all-reduce, so the collectives
// meet their peers' at once.
Status Barrier(Communicator& comm, float* one, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(comm.AllReduce(one, one, 1, ncclFloat32, ncclSum, stream));
  return comm.Wait(stream);
}

// Seconds of `reps` launches on `compute` while `collectives` all-reduces
// run on `side`, both starting together; the collectives must end first.
template <typename Launch>
StatusOr<double> TimeUnder(Communicator& comm, float* bucket, float* one, Launch&& launch, int reps,
                           cudaStream_t compute, cudaStream_t side) {
  P3D_RETURN_IF_ERROR(Barrier(comm, one, side));
  cudaEvent_t start, stop, comm_done;
  P3D_CAL_CUDA(cudaEventCreate(&start));
  P3D_CAL_CUDA(cudaEventCreate(&stop));
  P3D_CAL_CUDA(cudaEventCreate(&comm_done));
  P3D_CAL_CUDA(cudaEventRecord(start, compute));
  P3D_CAL_CUDA(cudaStreamWaitEvent(side, start));
  for (int i = 0; i < kAllReduces; ++i)
    P3D_RETURN_IF_ERROR(
        comm.AllReduce(bucket, bucket, kBucketFloats, ncclFloat32, ncclSum, side));
  P3D_CAL_CUDA(cudaEventRecord(comm_done, side));
  for (int i = 0; i < reps; ++i) P3D_RETURN_IF_ERROR(launch());
  P3D_CAL_CUDA(cudaEventRecord(stop, compute));
  P3D_RETURN_IF_ERROR(comm.Wait(side));
  P3D_CAL_CUDA(cudaEventSynchronize(stop));
  float loop_ms = 0, comm_ms = 0;
  P3D_CAL_CUDA(cudaEventElapsedTime(&loop_ms, start, stop));
  P3D_CAL_CUDA(cudaEventElapsedTime(&comm_ms, start, comm_done));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaEventDestroy(comm_done);
  if (comm_ms > loop_ms)
    return Status::Internal(fmt::format(
        "interference probe: the all-reduces ({:.2f} ms) outlasted the compute loop ({:.2f} ms)",
        comm_ms, loop_ms));
  return loop_ms * 1e-3;
}

}  // namespace

StatusOr<nlohmann::json> ProbeInterference(Communicator& comm, const Progress& progress,
                                           cudaStream_t compute) {
  cudaStream_t side;
  P3D_CAL_CUDA(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  float *bucket = nullptr, *one = nullptr;
  bf16 *a = nullptr, *b = nullptr, *d = nullptr, *x = nullptr, *y = nullptr, *z = nullptr;
  void* ws = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&bucket, kBucketFloats * sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&one, sizeof(float)));
  for (bf16** p : {&a, &b, &d}) P3D_CAL_CUDA(cudaMalloc(p, kGemmN * kGemmN * sizeof(bf16)));
  for (bf16** p : {&x, &y, &z}) P3D_CAL_CUDA(cudaMalloc(p, kAddElems * sizeof(bf16)));
  P3D_CAL_CUDA(cudaMalloc(&ws, Matmul::kWorkspaceBytes));
  P3D_RETURN_IF_ERROR(Fill(bucket, kBucketFloats, 1.0f, side));
  P3D_RETURN_IF_ERROR(Fill(one, 1, 0.0f, side));
  P3D_CAL_CUDA(cudaMemsetAsync(a, 0, kGemmN * kGemmN * sizeof(bf16), compute));
  P3D_CAL_CUDA(cudaMemsetAsync(b, 0, kGemmN * kGemmN * sizeof(bf16), compute));
  P3D_CAL_CUDA(cudaMemsetAsync(x, 0, kAddElems * sizeof(bf16), compute));
  P3D_CAL_CUDA(cudaMemsetAsync(y, 0, kAddElems * sizeof(bf16), compute));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Matmul> mm, Matmul::Create(ws, Matmul::kWorkspaceBytes));
  MatmulParams g;
  g.m = g.n = g.k = kGemmN;
  g.a = a;
  g.b = b;
  g.trans_b = true;
  g.d = d;
  auto gemm = [&]() { return mm->Run(g, compute); };
  auto add = [&]() { return ResidualAdd(x, y, z, kAddElems, compute); };

  P3D_RETURN_IF_ERROR(Barrier(comm, one, side));
  P3D_ASSIGN_OR_RETURN(double ar_s, TimeLaunches(
                                        [&]() {
                                          return comm.AllReduce(bucket, bucket, kBucketFloats,
                                                                ncclFloat32, ncclSum, side);
                                        },
                                        1, kAllReduces, side));
  P3D_RETURN_IF_ERROR(comm.Wait(side));
  const double comm_s = ar_s * kAllReduces;
  P3D_ASSIGN_OR_RETURN(double gemm_one, TimeLaunches(gemm, 2, 3, compute));
  P3D_ASSIGN_OR_RETURN(double add_one, TimeLaunches(add, 2, 3, compute));
  const int gemm_reps = static_cast<int>(std::ceil(kComputeOverComm * comm_s / gemm_one));
  const int add_reps = static_cast<int>(std::ceil(kComputeOverComm * comm_s / add_one));
  P3D_ASSIGN_OR_RETURN(double gemm_alone, TimeLaunches(gemm, 0, gemm_reps, compute));
  P3D_ASSIGN_OR_RETURN(double add_alone, TimeLaunches(add, 0, add_reps, compute));
  P3D_ASSIGN_OR_RETURN(double gemm_with,
                       TimeUnder(comm, bucket, one, gemm, gemm_reps, compute, side));
  P3D_ASSIGN_OR_RETURN(double add_with, TimeUnder(comm, bucket, one, add, add_reps, compute, side));
  gemm_alone *= gemm_reps;
  add_alone *= add_reps;
  for (void* p : {static_cast<void*>(bucket), static_cast<void*>(one), static_cast<void*>(a),
                  static_cast<void*>(b), static_cast<void*>(d), static_cast<void*>(x),
                  static_cast<void*>(y), static_cast<void*>(z), ws})
    cudaFree(p);
  cudaStreamDestroy(side);
  if (comm.rank() == 0)
    progress.Say(fmt::format(
        "interference: {} x {} MiB all-reduce {:.2f} ms over {} GPUs; GEMM loop {:.2f} -> {:.2f} "
        "ms ({:.2f} s lost per s of collective), residual-add loop {:.2f} -> {:.2f} ms ({:.2f})",
        kAllReduces, kBucketFloats * 4 >> 20, comm_s * 1e3, comm.size(), gemm_alone * 1e3,
        gemm_with * 1e3, (gemm_with - gemm_alone) / comm_s, add_alone * 1e3, add_with * 1e3,
        (add_with - add_alone) / comm_s));
  return nlohmann::json{{"group_size", comm.size()},
                        {"all_reduce_bytes", kBucketFloats * 4.0},
                        {"all_reduces", kAllReduces},
                        {"comm_alone_s", comm_s},
                        {"gemm", fmt::format("{0}x{0}x{0} bf16", kGemmN)},
                        {"gemm_alone_s", gemm_alone},
                        {"gemm_with_comm_s", gemm_with},
                        {"memory_kernel", "ResidualAdd (executor/kernels/elementwise.h)"},
                        {"memory_alone_s", add_alone},
                        {"memory_with_comm_s", add_with}};
}

}  // namespace p3d
