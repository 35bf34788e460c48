// CPU AdamW for optimizer offload (docs/offload.md): the executor's offloaded
// optimizer step, pure host C++ so CI tests it without a GPU.
//
// The update is the GPU kernel's (executor/kernels/optimizer.h), element by
// element, in the same fp32 operation order, for step t >= 1:
//   g = grad * scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
//   w = w * (1 - lr wd);  w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with the two bias-correction factors computed in double and rounded to
// float once, as the GPU launcher does; then bf16(w), round to nearest even.
// nvcc contracts multiply-adds into FMAs by default and this code does not,
// so CPU and GPU agree to about one fp32 ulp, not bit for bit (the test pins
// the CPU to a scalar restatement of the formula exactly).
//
// Vectorised by the compiler (a branch-free loop over restrict pointers,
// built with -fno-math-errno) and multi-threaded over a CpuThreadPool, whose
// threads start once and serve every later call (the offloaded step calls
// once per copy chunk, dozens to hundreds of times a step): the elements are split
// into contiguous pieces of whole cache lines, one per pool thread (the
// calling thread takes the first), each at least kCpuAdamMinPerThread
// elements. Results do not depend on the number of threads.
//
// Thread-safety: the arrays must not overlap and must not be touched by
// others during a call; distinct calls on distinct arrays are independent
// when they use distinct pools. A pool serves one calling thread at a time.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/status.h"

namespace p3d {

// Elements per copy / CPU AdamW call of the offloaded step (HostOptimizer's
// default chunk, and the calibration probe's): large enough that one pool
// dispatch (tens of microseconds on a many-core node) is ~1% of the chunk's
// update, small enough that the exposed first download and last upload stay
// a few milliseconds at PCIe rates.
inline constexpr int64_t kOffloadChunkElements = int64_t{1} << 24;

// Fewer elements than this per thread: fewer threads (a dispatch costs more
// than the work it would share).
inline constexpr int64_t kCpuAdamMinPerThread = int64_t{1} << 15;

// A fixed team of `size` threads: size - 1 workers started by the
// constructor, which wait on a condition variable between calls, plus the
// thread that calls Run. The destructor stops and joins the workers.
class CpuThreadPool {
 public:
  explicit CpuThreadPool(int size);  // size < 1 is taken as 1
  ~CpuThreadPool();
  CpuThreadPool(const CpuThreadPool&) = delete;
  CpuThreadPool& operator=(const CpuThreadPool&) = delete;

  int size() const { return size_; }
  // Calls fn(i) for i in [0, parties), concurrently: i = 0 on the calling
  // thread, i > 0 on worker i; returns when every call has returned.
  // parties is clamped to [1, size()]. fn must not throw.
  void Run(int parties, const std::function<void(int)>& fn);

 private:
  void Work(int id);

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* fn_ = nullptr;  // guarded by mu_
  int parties_ = 0, pending_ = 0;                 // guarded by mu_
  uint64_t generation_ = 0;                       // guarded by mu_; bumped by each Run
  bool stop_ = false;                             // guarded by mu_
};

struct CpuAdamWHyper {
  float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
  int64_t step = 1;  // t, 1-based
};

// Round to the nearest bf16, ties to even (NaN -> 0x7fc0), as __float2bfloat16_rn.
inline uint16_t Bf16BitsRne(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// sum(grads[i]^2), accumulated in double per thread over all pool.size()
// threads (deterministic for a given pool size). For the global-norm clip:
// scale = min(1, max_norm / (sqrt(total) + 1e-6)).
double CpuSquaredSum(const float* grads, int64_t n, CpuThreadPool& pool);

// Array elements [begin, end) and whether weight decay applies to them.
struct CpuAdamWRun {
  int64_t begin = 0, end = 0;
  bool decay = true;
};

// Updates elements [runs.front().begin, runs.back().end) of master, m, v in
// place (indices into every array) and writes bf16 bits of master to
// weights; h.weight_decay applies where run.decay, 0 elsewhere. One pool
// dispatch for all the runs. Errors: step < 1, runs not contiguous and in
// order (each starts where the previous ends, begin <= end, begin >= 0), or
// a null array when there are elements.
Status CpuAdamWUpdate(const float* grads, float grad_scale, float* master, float* m, float* v,
                      uint16_t* weights, std::span<const CpuAdamWRun> runs, const CpuAdamWHyper& h,
                      CpuThreadPool& pool);

// One-off calls (tests, benchmarks): as above over [0, n) (decay on), with a
// pool of `threads` started for this call. Errors: also n < 0, threads < 1.
double CpuSquaredSum(const float* grads, int64_t n, int threads);
Status CpuAdamWUpdate(const float* grads, float grad_scale, float* master, float* m, float* v,
                      uint16_t* weights, int64_t n, const CpuAdamWHyper& h, int threads);

}  // namespace p3d
