// HostOptimizer: the executor's side of optimizer offload (ZeRO-Offload,
// docs/offload.md): the fp32 master weights and Adam moments of one GPU's flat
// parameter shard live in pinned host memory, and the AdamW step runs on the
// CPU (executor/host/cpu_adam.h) instead of the GPU (kernels/optimizer.h).
//
// The shard has n elements at host offsets [0, n) ("local" offsets, as
// ZeroLayout stores master/m/v). On the GPU it is a list of OffloadSlices:
// contiguous runs whose fp32 gradients and bf16 working weights sit at device
// addresses of the caller's choosing (ZeRO-0/1: the full gradient buffer;
// ZeRO-2/3: the reduced gradient shard). Weight decay is on or off per
// DecayRange (ZeroLayout's AdamW segments, in local offsets).
//
// One Step, with the slices cut into chunks of at most chunk_elements (a chunk
// never spans two slices):
//   d2h stream   waits for the compute stream, copies the clip scale (4 bytes),
//                then every gradient chunk into pinned staging, back to back,
//                an event after each;
//   host thread  for chunk k: waits for its event, runs the CPU AdamW on it
//                (bf16 result into pinned staging), enqueues its upload;
//   h2d stream   uploads chunk k's bf16 weights into the GPU's weights.
// The copy of chunk k+1 overlaps the CPU AdamW of chunk k, and the upload of
// chunk k-1 overlaps both (PCIe is full duplex; the two streams use the two
// copy engines). Step returns when the CPU work is done; the compute stream
// waits (on the GPU) for the last upload, so work enqueued after Step sees the
// new weights. The simulator's model of this (docs/offload.md "Time") assumes
// 25M-element chunks; the default here is 16M (kOffloadChunkElements: the
// exposed tail is one chunk's upload, so smaller is better until the per-chunk
// copy and thread-dispatch overheads show).
//
// CPU threads: one CpuThreadPool per HostOptimizer, started by Create and
// reused by every chunk of every step; a chunk is one dispatch over all its
// decay runs (cpu_adam.h), each thread a contiguous piece of it.
//
// Update rule: exactly the GPU AdamW's (same fp32 formula, order and bias
// correction; cpu_adam.h), with the gradients multiplied by the clip scale the
// GPU computed (ClipScaleFromPartials' scale_out, read from the device), as
// the GPU kernel does. nvcc contracts multiply-adds into FMAs and the CPU code
// does not, so the two agree to ~1 fp32 ulp per step, not bit for bit
// (tests/executor_offload measures it).
//
// Host memory (pinned, cudaHostAlloc): master, m, v, gradient staging 4n bytes
// each, bf16 staging 2n: the 18 bytes/element of docs/offload.md's host term.
//
// Thread-safety: one host thread uses a HostOptimizer at a time. The device
// current at Create must be current for every later call.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "executor/dtype.h"
#include "executor/host/cpu_adam.h"
#include "executor/kernels/optimizer.h"
#include "executor/zero_layout.h"

namespace p3d {

// A contiguous run of the shard: host elements [local, local + size).
struct OffloadSlice {
  int64_t local = 0, size = 0;
  const float* device_f32 = nullptr;  // size fp32: gradients (Step) or parameters (InitMaster)
  bf16* device_bf16 = nullptr;        // size bf16: where Step uploads the updated weights
};

// Host elements [local, local + size) with one weight-decay flag.
struct DecayRange {
  int64_t local = 0, size = 0;
  bool decay = false;
};

struct HostOptimizerOptions {
  int64_t chunk_elements = kOffloadChunkElements;  // elements per copy / CPU AdamW call
  int threads = 0;                                 // CPU AdamW threads; 0: all hardware threads
};

// What one Step did (filled only when asked: Step then waits for the last upload).
struct OffloadStepStats {
  int64_t chunks = 0;
  int64_t d2h_bytes = 0, h2d_bytes = 0;  // gradients down, bf16 weights up
  double d2h_s = 0;                      // GPU-timed span of the gradient copies (back to back)
  double h2d_s = 0;       // sum of the GPU-timed uploads (each as long as the copy itself)
  double cpu_adam_s = 0;  // host wall time in the CPU AdamW
  double wait_s = 0;      // host wall time waiting for gradient chunks to arrive
  double step_s = 0;      // host wall time from Step's start to the last upload's end
};

class HostOptimizer {
 public:
  // Allocates the pinned buffers (m, v zeroed) and the two copy streams.
  // `decay` must tile [0, n) in increasing order. Errors: n <= 0,
  // chunk_elements <= 0, threads < 0, decay not tiling, or a CUDA call
  // (cudaHostAlloc fails when pinned memory runs out; the message names it
  // and the bytes asked for).
  static StatusOr<std::unique_ptr<HostOptimizer>> Create(int64_t n, std::vector<DecayRange> decay,
                                                         const HostOptimizerOptions& options = {});
  ~HostOptimizer();
  HostOptimizer(const HostOptimizer&) = delete;
  HostOptimizer& operator=(const HostOptimizer&) = delete;

  // master <- the fp32 parameters at each slice's device_f32 (the GPU init's
  // values), m, v <- 0; after `stream`'s pending work; synchronous.
  // `slices` must tile [0, n) in increasing local order (as for Step).
  Status InitMaster(std::span<const OffloadSlice> slices, cudaStream_t stream);

  // One AdamW step of the shard (see the file comment). device_clip_scale: one
  // fp32 on the device, written by `stream`'s work before this call. Errors:
  // slices not tiling [0, n), h.step < 1, a CUDA call.
  Status Step(std::span<const OffloadSlice> slices, const float* device_clip_scale,
              const AdamWHyper& h, cudaStream_t stream, OffloadStepStats* stats = nullptr);

  // The host state, for checkpoints (read after Step returns; write between steps).
  std::span<float> master() { return {master_, static_cast<size_t>(n_)}; }
  std::span<float> adam_m() { return {m_, static_cast<size_t>(n_)}; }
  std::span<float> adam_v() { return {v_, static_cast<size_t>(n_)}; }
  int64_t size() const { return n_; }
  // Pinned host bytes held: 18 per element (master, m, v, gradient and bf16 staging) + 4.
  int64_t pinned_bytes() const { return n_ * (4 * sizeof(float) + sizeof(uint16_t)) + 4; }
  int threads() const { return threads_; }

 private:
  HostOptimizer() = default;
  Status EnsureEvents(size_t chunks);
  Status AdamWChunk(int64_t begin, int64_t end, float scale, const AdamWHyper& h);

  int64_t n_ = 0;
  std::vector<CpuAdamWRun> runs_;        // the decay ranges as [begin, end) runs
  std::vector<CpuAdamWRun> chunk_runs_;  // scratch: the runs of one chunk
  std::unique_ptr<CpuThreadPool> pool_;
  int64_t chunk_ = 0;
  int threads_ = 1;
  float *master_ = nullptr, *m_ = nullptr, *v_ = nullptr, *grads_ = nullptr;
  uint16_t* weights_ = nullptr;  // bf16 bits
  float* scale_ = nullptr;       // pinned copy of the clip scale
  cudaStream_t d2h_ = nullptr, h2d_ = nullptr;
  cudaEvent_t ready_ = nullptr, d2h_begin_ = nullptr, uploaded_ = nullptr;
  // Per chunk: gradients arrived; upload started; upload done.
  std::vector<cudaEvent_t> arrived_, upload_begin_, upload_end_;
};

// The executor's shard as slices and decay ranges (executor/zero_layout.h):
// slice i holds zero.slices[i]; its gradients are at grads + local
// (grads_local: ZeRO-2/3's reduced shard) or grads + begin (the full gradient
// buffer, ZeRO-0/1); its weights at weights + begin.
std::vector<OffloadSlice> ZeroOffloadSlices(const ZeroLayout& zero, const float* grads,
                                            bool grads_local, bf16* weights);
std::vector<DecayRange> ZeroDecayRanges(const ZeroLayout& zero);

}  // namespace p3d
