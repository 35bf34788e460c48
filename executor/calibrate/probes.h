// The measurements behind p3d-calibrate. Each probe measures one thing the
// simulator needs, checks the result it computed while timing it, and
// returns the raw figures as the JSON of docs/calibration.md ("calibration"
// object); simulator/profile.h turns them into hardware figures.
//
// Timing: CUDA events around `reps` back-to-back launches on one stream
// after warm-up launches, divided by reps (what a training step's stream of
// kernels sees, launch gaps included). Every probe runs on the current
// device and returns Status::Internal naming the call or the wrong result.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/attention_core.h"
#include "simulator/profile.h"

namespace p3d {

class Communicator;

// Progress lines on stderr, stamped with seconds since the start, and the
// deadline every probe respects.
class Progress {
 public:
  explicit Progress(double budget_s)
      : start_(std::chrono::steady_clock::now()), budget_s_(budget_s) {}
  double elapsed_s() const;
  bool out_of_time() const { return elapsed_s() > budget_s_; }
  void Say(const std::string& line) const;

 private:
  std::chrono::steady_clock::time_point start_;
  double budget_s_;
};

// Calls launch() `warmup` times, then times `reps` calls; mean seconds per call.
template <typename Launch>
StatusOr<double> TimeLaunches(Launch&& launch, int warmup, int reps, cudaStream_t stream);
// The same with prelude() enqueued after the warm-up and before the timed
// calls (outside the timing): e.g. device work the timed calls queue behind.
template <typename Prelude, typename Launch>
StatusOr<double> TimeLaunchesAfter(Prelude&& prelude, Launch&& launch, int warmup, int reps,
                                   cudaStream_t stream);

// Runtime memory ("runtime" object): free memory after the CUDA context, a
// cuBLASLt handle and one GEMM (their buffers freed again), the card's total
// as nvidia-smi reports it, and cudaMalloc's overhead on one arena-sized
// allocation. Run first, before anything else allocates.
StatusOr<nlohmann::json> ProbeRuntime(const Progress& progress);

// The NVIDIA driver version (nvidia-smi), or the CUDA driver API version.
std::string DriverVersion();

// HBM ("hbm" object): device-to-device copy and the executor's residual-add
// kernel over `bytes`-sized buffers, result spot-checked.
StatusOr<nlohmann::json> ProbeHbm(double bytes, const Progress& progress, cudaStream_t stream);

// GEMMs ("gemm" array): forward, input-gradient and weight-gradient layouts of
// each shape through executor/matmul.h, a few entries of each checked against
// a CPU dot product. Shapes after the deadline are skipped (and counted).
struct GemmShapeToMeasure {
  LinearGemmShape shape;
  std::string source;  // "plan" | "sweep"
};
StatusOr<nlohmann::json> ProbeGemms(const std::vector<GemmShapeToMeasure>& shapes,
                                    const Progress& progress, cudaStream_t stream, int* skipped);

// FP8 GEMMs ("fp8_gemm" array, same fields as "gemm"): the forward,
// input-gradient and weight-gradient GEMMs of each shape as TN FP8 GEMMs
// (E4M3 x E4M3 -> bf16, executor/fp8_matmul.h), a few entries of each
// checked against a CPU dot product of the dequantized inputs. Shapes with a
// dimension not divisible by 16 (cuBLASLt FP8) and those after the deadline
// are skipped (and counted). Needs compute capability >= 8.9.
StatusOr<nlohmann::json> ProbeFp8Gemms(const std::vector<GemmShapeToMeasure>& shapes,
                                       const Progress& progress, cudaStream_t stream, int* skipped);

// Collectives ("collectives" array) over `comm`, every member calling it;
// results checked on every rank, time = the slowest rank's mean. `ops`: a
// subset of "all-reduce", "reduce-scatter", "all-gather", "send-recv"
// (empty: all four).
StatusOr<nlohmann::json> ProbeCollectives(Communicator& comm,
                                          const std::vector<double>& sizes_bytes,
                                          const Progress& progress, cudaStream_t stream,
                                          const std::vector<std::string>& ops = {});

// Attention core ("attention" array): executor/attention_core.h forward, its
// probabilities part and backward per shape, the last query's output and the
// last key's value gradient checked against a float64 CPU computation.
// Shapes after the deadline are skipped (and counted).
struct AttentionShapeToMeasure {
  std::string label;  // e.g. "gpt-1.3b B=4 S=2048 TP=1"
  AttentionCoreShape shape;
};
StatusOr<nlohmann::json> ProbeAttention(const std::vector<AttentionShapeToMeasure>& shapes,
                                        const Progress& progress, cudaStream_t stream,
                                        int* skipped);

// Optimizer ("optimizer" object): gradient-norm partials, clip scale and
// AdamW over `params` fp32 parameters, three updates checked on the CPU.
StatusOr<nlohmann::json> ProbeOptimizer(int64_t params, const Progress& progress,
                                        cudaStream_t stream);

// Offloaded optimizer step ("offload_step" object): executor/offload's
// HostOptimizer over `params` and 4 x `params` parameters (pinned copies down
// and up pipelined with the CPU AdamW), each size's first step's weights
// checked against the CPU, median of 3 timed steps ("sizes": step time, the
// CPU update's time inside it, copy rates); "params" / "cpu_adam_s" are the
// marginal parameters and CPU seconds between the two sizes.
StatusOr<nlohmann::json> ProbeOffloadStep(int64_t params, const Progress& progress,
                                          cudaStream_t stream);

// Interference ("interference" object): a GEMM loop and a residual-add loop
// on `compute`, alone and with fp32 all-reduces over `comm` running on a side
// stream. Every member of `comm` calls it.
StatusOr<nlohmann::json> ProbeInterference(Communicator& comm, const Progress& progress,
                                           cudaStream_t compute);

// ---- implementation of the template ----

#define P3D_CAL_CUDA(expr)                                              \
  do {                                                                  \
    cudaError_t p3d_cal_err_ = (expr);                                  \
    if (p3d_cal_err_ != cudaSuccess)                                    \
      return ::p3d::Status::Internal(std::string(#expr) + ": " +        \
                                     cudaGetErrorString(p3d_cal_err_)); \
  } while (0)

template <typename Prelude, typename Launch>
StatusOr<double> TimeLaunchesAfter(Prelude&& prelude, Launch&& launch, int warmup, int reps,
                                   cudaStream_t stream) {
  for (int i = 0; i < warmup; ++i) P3D_RETURN_IF_ERROR(launch());
  cudaEvent_t start, stop;
  P3D_CAL_CUDA(cudaEventCreate(&start));
  P3D_CAL_CUDA(cudaEventCreate(&stop));
  P3D_RETURN_IF_ERROR(prelude());
  P3D_CAL_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < reps; ++i) P3D_RETURN_IF_ERROR(launch());
  P3D_CAL_CUDA(cudaEventRecord(stop, stream));
  P3D_CAL_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  P3D_CAL_CUDA(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  P3D_CAL_CUDA(cudaGetLastError());
  return ms * 1e-3 / reps;
}

template <typename Launch>
StatusOr<double> TimeLaunches(Launch&& launch, int warmup, int reps, cudaStream_t stream) {
  return TimeLaunchesAfter([] { return Status::Ok(); }, launch, warmup, reps, stream);
}

}  // namespace p3d
