#include "executor/offload/host_optimizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "executor/check.h"
#include "executor/host/cpu_adam.h"

namespace p3d {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Ranges given as (local, size) must tile [0, n) in increasing order.
template <typename Range>
Status CheckTiling(std::span<const Range> ranges, int64_t n, const char* what) {
  int64_t end = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].local != end || ranges[i].size <= 0)
      return Status::InvalidArgument(fmt::format(
          "HostOptimizer: {} must tile [0, {}) in order: entry {} is [{}, {}), expected to start "
          "at {} with a positive size",
          what, n, i, ranges[i].local, ranges[i].local + ranges[i].size, end));
    end += ranges[i].size;
  }
  if (end != n)
    return Status::InvalidArgument(
        fmt::format("HostOptimizer: {} must tile [0, {}) in order: they end at {}", what, n, end));
  return Status::Ok();
}

// Pinned host array of n T; cudaFreeHost'd by the destructor.
template <typename T>
Status HostAlloc(T** ptr, int64_t n) {
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(ptr), n * sizeof(T), cudaHostAllocDefault));
  return Status::Ok();
}

struct Chunk {
  int64_t local = 0, size = 0;
  const float* device_grads = nullptr;
  bf16* device_weights = nullptr;
};

std::vector<Chunk> CutChunks(std::span<const OffloadSlice> slices, int64_t chunk) {
  std::vector<Chunk> chunks;
  for (const OffloadSlice& s : slices)
    for (int64_t off = 0; off < s.size; off += chunk) {
      const int64_t len = std::min(chunk, s.size - off);
      chunks.push_back({s.local + off, len, s.device_f32 + off, s.device_bf16 + off});
    }
  return chunks;
}

}  // namespace

StatusOr<std::unique_ptr<HostOptimizer>> HostOptimizer::Create(
    int64_t n, std::vector<DecayRange> decay, const HostOptimizerOptions& options) {
  if (n <= 0) return Status::InvalidArgument(fmt::format("HostOptimizer: n = {} must be > 0", n));
  if (options.chunk_elements <= 0)
    return Status::InvalidArgument(
        fmt::format("HostOptimizer: chunk_elements = {} must be > 0", options.chunk_elements));
  if (options.threads < 0)
    return Status::InvalidArgument(
        fmt::format("HostOptimizer: threads = {} must be >= 0", options.threads));
  P3D_RETURN_IF_ERROR(CheckTiling(std::span<const DecayRange>(decay), n, "decay ranges"));
  std::unique_ptr<HostOptimizer> o(new HostOptimizer());
  o->n_ = n;
  o->chunk_ = options.chunk_elements;
  o->threads_ = options.threads > 0
                    ? options.threads
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  o->pool_ = std::make_unique<CpuThreadPool>(o->threads_);
  for (const DecayRange& r : decay) o->runs_.push_back({r.local, r.local + r.size, r.decay});
  P3D_RETURN_IF_ERROR(HostAlloc(&o->master_, n));
  P3D_RETURN_IF_ERROR(HostAlloc(&o->m_, n));
  P3D_RETURN_IF_ERROR(HostAlloc(&o->v_, n));
  P3D_RETURN_IF_ERROR(HostAlloc(&o->grads_, n));
  P3D_RETURN_IF_ERROR(HostAlloc(&o->weights_, n));
  P3D_RETURN_IF_ERROR(HostAlloc(&o->scale_, 1));
  std::memset(o->m_, 0, n * sizeof(float));
  std::memset(o->v_, 0, n * sizeof(float));
  CUDA_CHECK(cudaStreamCreateWithFlags(&o->d2h_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&o->h2d_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&o->ready_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreate(&o->d2h_begin_));
  CUDA_CHECK(cudaEventCreate(&o->uploaded_));
  return o;
}

HostOptimizer::~HostOptimizer() {
  // Nothing may still copy into or out of the buffers being freed.
  if (d2h_) cudaStreamSynchronize(d2h_);
  if (h2d_) cudaStreamSynchronize(h2d_);
  for (auto* events : {&arrived_, &upload_begin_, &upload_end_})
    for (cudaEvent_t e : *events) cudaEventDestroy(e);
  for (cudaEvent_t e : {ready_, d2h_begin_, uploaded_})
    if (e) cudaEventDestroy(e);
  for (cudaStream_t s : {d2h_, h2d_})
    if (s) cudaStreamDestroy(s);
  for (void* p :
       {static_cast<void*>(master_), static_cast<void*>(m_), static_cast<void*>(v_),
        static_cast<void*>(grads_), static_cast<void*>(weights_), static_cast<void*>(scale_)})
    if (p) cudaFreeHost(p);
}

Status HostOptimizer::EnsureEvents(size_t chunks) {
  for (auto* events : {&arrived_, &upload_begin_, &upload_end_})
    while (events->size() < chunks) {
      cudaEvent_t e;
      CUDA_CHECK(cudaEventCreate(&e));
      events->push_back(e);
    }
  return Status::Ok();
}

Status HostOptimizer::InitMaster(std::span<const OffloadSlice> slices, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckTiling(slices, n_, "slices"));
  for (const OffloadSlice& s : slices)
    CUDA_CHECK(cudaMemcpyAsync(master_ + s.local, s.device_f32, s.size * sizeof(float),
                               cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::memset(m_, 0, n_ * sizeof(float));
  std::memset(v_, 0, n_ * sizeof(float));
  return Status::Ok();
}

// CPU AdamW over host elements [begin, end): the decay runs it meets, clipped
// to it, in one pool dispatch.
Status HostOptimizer::AdamWChunk(int64_t begin, int64_t end, float scale, const AdamWHyper& h) {
  auto run = std::upper_bound(runs_.begin(), runs_.end(), begin,
                              [](int64_t x, const CpuAdamWRun& r) { return x < r.begin; });
  chunk_runs_.clear();
  for (--run; run != runs_.end() && run->begin < end; ++run)
    chunk_runs_.push_back({std::max(begin, run->begin), std::min(end, run->end), run->decay});
  const CpuAdamWHyper ch{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.step};
  return CpuAdamWUpdate(grads_, scale, master_, m_, v_, weights_, chunk_runs_, ch, *pool_);
}

Status HostOptimizer::Step(std::span<const OffloadSlice> slices, const float* device_clip_scale,
                           const AdamWHyper& h, cudaStream_t stream, OffloadStepStats* stats) {
  const auto start = std::chrono::steady_clock::now();
  P3D_RETURN_IF_ERROR(CheckTiling(slices, n_, "slices"));
  if (h.step < 1)
    return Status::InvalidArgument(fmt::format("HostOptimizer: step = {} must be >= 1", h.step));
  const std::vector<Chunk> chunks = CutChunks(slices, chunk_);
  P3D_RETURN_IF_ERROR(EnsureEvents(chunks.size()));

  // All gradient copies at once, after the compute stream's work so far.
  CUDA_CHECK(cudaEventRecord(ready_, stream));
  CUDA_CHECK(cudaStreamWaitEvent(d2h_, ready_, 0));
  CUDA_CHECK(
      cudaMemcpyAsync(scale_, device_clip_scale, sizeof(float), cudaMemcpyDeviceToHost, d2h_));
  CUDA_CHECK(cudaEventRecord(d2h_begin_, d2h_));
  for (size_t k = 0; k < chunks.size(); ++k) {
    const Chunk& c = chunks[k];
    CUDA_CHECK(cudaMemcpyAsync(grads_ + c.local, c.device_grads, c.size * sizeof(float),
                               cudaMemcpyDeviceToHost, d2h_));
    CUDA_CHECK(cudaEventRecord(arrived_[k], d2h_));
  }

  // Chunk by chunk as it arrives: CPU AdamW, then its upload. The uploads need
  // no wait on the compute stream: this thread saw chunk k arrive, which was
  // after `ready_`, and nothing was enqueued on `stream` since.
  double wait_s = 0, cpu_s = 0;
  for (size_t k = 0; k < chunks.size(); ++k) {
    const Chunk& c = chunks[k];
    auto t = std::chrono::steady_clock::now();
    CUDA_CHECK(cudaEventSynchronize(arrived_[k]));
    wait_s += Seconds(t);
    t = std::chrono::steady_clock::now();
    P3D_RETURN_IF_ERROR(AdamWChunk(c.local, c.local + c.size, *scale_, h));
    cpu_s += Seconds(t);
    CUDA_CHECK(cudaEventRecord(upload_begin_[k], h2d_));
    CUDA_CHECK(cudaMemcpyAsync(c.device_weights, weights_ + c.local, c.size * sizeof(uint16_t),
                               cudaMemcpyHostToDevice, h2d_));
    CUDA_CHECK(cudaEventRecord(upload_end_[k], h2d_));
  }
  CUDA_CHECK(cudaEventRecord(uploaded_, h2d_));
  CUDA_CHECK(cudaStreamWaitEvent(stream, uploaded_, 0));
  if (!stats) return Status::Ok();

  CUDA_CHECK(cudaEventSynchronize(uploaded_));
  OffloadStepStats s;
  s.step_s = Seconds(start);
  s.chunks = static_cast<int64_t>(chunks.size());
  s.d2h_bytes = n_ * static_cast<int64_t>(sizeof(float));
  s.h2d_bytes = n_ * static_cast<int64_t>(sizeof(uint16_t));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, d2h_begin_, arrived_[chunks.size() - 1]));
  s.d2h_s = ms * 1e-3;
  for (size_t k = 0; k < chunks.size(); ++k) {
    CUDA_CHECK(cudaEventElapsedTime(&ms, upload_begin_[k], upload_end_[k]));
    s.h2d_s += ms * 1e-3;
  }
  s.cpu_adam_s = cpu_s;
  s.wait_s = wait_s;
  *stats = s;
  return Status::Ok();
}

std::vector<OffloadSlice> ZeroOffloadSlices(const ZeroLayout& zero, const float* grads,
                                            bool grads_local, bf16* weights) {
  std::vector<OffloadSlice> slices;
  for (const OwnedSlice& s : zero.slices)
    slices.push_back(
        {s.local, s.size(), grads + (grads_local ? s.local : s.begin), weights + s.begin});
  return slices;
}

std::vector<DecayRange> ZeroDecayRanges(const ZeroLayout& zero) {
  std::vector<DecayRange> ranges;
  for (const AdamSegment& seg : zero.segments)
    ranges.push_back({seg.local, seg.end - seg.begin, seg.decay});
  return ranges;
}

}  // namespace p3d
