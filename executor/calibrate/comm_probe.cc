// Collective probe (probes.h): every operation the executor uses, at each
// size, result checked on every rank, then timed; float32 sum.
//
// Timing measures the GPU, not the host: each timed batch is queued behind a
// device-side delay (one 8192^3 bf16 GEMM, ~1.5 ms on an H100) so that the
// host has enqueued every collective of the batch before the first starts. A
// training step enqueues its collectives ahead of the GPU the same way; timed
// back to back from an idle GPU, the host's enqueue cost of a nonblocking
// communicator (~50 us a call here) would be charged as link latency.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "executor/calibrate/probes.h"
#include "executor/comm/collective_call.h"
#include "executor/comm/communicator.h"
#include "executor/matmul.h"

namespace p3d {
namespace {

// One large GEMM on `stream`: the device-side delay the timed batches queue behind.
class DeviceDelay {
 public:
  static constexpr int64_t kN = 8192;
  Status Init() {
    for (void** p : {&a_, &d_}) P3D_CAL_CUDA(cudaMalloc(p, kN * kN * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&ws_, Matmul::kWorkspaceBytes));
    P3D_CAL_CUDA(cudaMemset(a_, 0, kN * kN * sizeof(bf16)));
    P3D_ASSIGN_OR_RETURN(mm_, Matmul::Create(ws_, Matmul::kWorkspaceBytes));
    return Status::Ok();
  }
  ~DeviceDelay() {
    mm_.reset();
    for (void* p : {a_, d_, ws_}) cudaFree(p);
  }
  Status Enqueue(cudaStream_t stream) {
    MatmulParams g;
    g.m = g.n = g.k = kN;
    g.a = g.b = static_cast<const bf16*>(a_);
    g.trans_b = true;
    g.d = static_cast<bf16*>(d_);
    return mm_->Run(g, stream);
  }

 private:
  void *a_ = nullptr, *d_ = nullptr, *ws_ = nullptr;
  std::unique_ptr<Matmul> mm_;
};

}  // namespace

StatusOr<nlohmann::json> ProbeCollectives(Communicator& world, const std::vector<double>& sizes,
                                          const Progress& progress, cudaStream_t stream,
                                          const std::vector<std::string>& ops) {
  const int n = world.size(), rank = world.rank();
  const double largest = *std::max_element(sizes.begin(), sizes.end());
  float *send = nullptr, *recv = nullptr;
  double* slowest = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&send, static_cast<size_t>(largest) + 64));
  P3D_CAL_CUDA(cudaMalloc(&recv, static_cast<size_t>(largest) + 64));
  P3D_CAL_CUDA(cudaMalloc(&slowest, sizeof(double)));
  DeviceDelay delay;
  P3D_RETURN_IF_ERROR(delay.Init());
  nlohmann::json out = nlohmann::json::array();
  for (Collective c : kCollectives) {
    const std::string op = CollectiveName(c);
    if (!ops.empty() && std::find(ops.begin(), ops.end(), op) == ops.end()) continue;
    for (double bytes : sizes) {
      const CollectiveCounts k = CountsOf(c, bytes, n);
      std::vector<float> host(k.send);
      for (size_t i = 0; i < k.send; ++i) host[i] = CollectiveInput(rank, i);
      P3D_CAL_CUDA(cudaMemcpy(send, host.data(), k.send * sizeof(float), cudaMemcpyHostToDevice));
      P3D_CAL_CUDA(cudaMemset(recv, 0, k.recv * sizeof(float)));
      P3D_RETURN_IF_ERROR(IssueCollective(world, c, k, send, recv, stream));
      P3D_RETURN_IF_ERROR(world.Wait(stream));
      std::vector<float> got(k.recv);
      P3D_CAL_CUDA(cudaMemcpy(got.data(), recv, k.recv * sizeof(float), cudaMemcpyDeviceToHost));
      size_t wrong = 0;
      for (size_t i = 0; i < k.recv; ++i) wrong += got[i] != CollectiveExpected(c, k, rank, n, i);
      if (wrong)
        return Status::Internal(
            fmt::format("rank {}: {} of {} bytes gave {} wrong elements", rank, op, bytes, wrong));
      P3D_ASSIGN_OR_RETURN(
          double mean,
          TimeLaunchesAfter([&]() { return delay.Enqueue(stream); },
                            [&]() { return IssueCollective(world, c, k, send, recv, stream); }, 3, 10, stream));
      // The slowest rank's time is the collective's time.
      P3D_CAL_CUDA(cudaMemcpy(slowest, &mean, sizeof(double), cudaMemcpyHostToDevice));
      P3D_RETURN_IF_ERROR(world.AllReduce(slowest, slowest, 1, ncclFloat64, ncclMax, stream));
      P3D_RETURN_IF_ERROR(world.Wait(stream));
      P3D_CAL_CUDA(cudaMemcpy(&mean, slowest, sizeof(double), cudaMemcpyDeviceToHost));
      const double full = static_cast<double>(k.full) * sizeof(float);
      if (rank == 0)
        progress.Say(fmt::format(
            "{} {:<14} {:>2} GPUs {:>10.0f} B  {:8.1f} us  algbw {:6.1f} GB/s  (checked)",
            world.name(), op, n, full, mean * 1e6, full / mean / 1e9));
      out.push_back({{"op", op},
                     {"link", "intra"},
                     {"group_size", n},
                     {"bytes", full},
                     {"seconds", mean},
                     {"wrong_elements", 0}});
    }
  }
  cudaFree(send);
  cudaFree(recv);
  cudaFree(slowest);
  return out;
}

}  // namespace p3d
