#include "executor/host/cpu_adam.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace p3d {

CpuThreadPool::CpuThreadPool(int size) : size_(std::max(1, size)) {
  workers_.reserve(size_ - 1);
  for (int id = 1; id < size_; ++id) workers_.emplace_back([this, id] { Work(id); });
}

CpuThreadPool::~CpuThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void CpuThreadPool::Work(int id) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    start_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (id >= parties_) continue;  // not needed this round
    const std::function<void(int)>* fn = fn_;
    lock.unlock();
    (*fn)(id);
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

void CpuThreadPool::Run(int parties, const std::function<void(int)>& fn) {
  parties = std::clamp(parties, 1, size_);
  if (parties > 1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      parties_ = parties;
      pending_ = parties - 1;
      ++generation_;
    }
    start_.notify_all();
  }
  fn(0);
  if (parties == 1) return;
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

namespace {

constexpr int64_t kLine = 16;  // floats per 64-byte cache line

// Runs fn(begin, end, part) over `parties` contiguous pieces of [0, n), whole
// cache lines each (the last may be shorter), piece 0 on the calling thread.
template <typename Fn>
void ForPieces(CpuThreadPool& pool, int64_t n, int parties, Fn fn) {
  const int64_t lines = (n + kLine - 1) / kLine;
  const int64_t per = (lines + parties - 1) / parties * kLine;
  pool.Run(parties, [&](int t) {
    if (t * per < n) fn(t * per, std::min(n, (t + 1) * per), t);
  });
}

struct AdamWConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, decay_factor, step_size, inv_sqrt_bc2;
};

AdamWConstants Constants(const CpuAdamWHyper& h, float weight_decay) {
  // Bias corrections as the GPU launcher computes them (double, then float).
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  return {h.beta1,
          h.beta2,
          1.0f - h.beta1,
          1.0f - h.beta2,
          h.eps,
          static_cast<float>(1.0 - static_cast<double>(h.lr) * weight_decay),
          static_cast<float>(h.lr / bc1),
          static_cast<float>(1.0 / std::sqrt(bc2))};
}

// The GPU kernel's per-element update (optimizer.cu AdamWKernel), one piece.
void AdamWPiece(const float* __restrict grads, float scale, float* __restrict master,
                float* __restrict m, float* __restrict v, uint16_t* __restrict weights,
                int64_t begin, int64_t end, const AdamWConstants& c) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = grads[i] * scale;
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * g;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    float w = master[i] * c.decay_factor;
    w -= c.step_size * mi / (std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps);
    master[i] = w;
    weights[i] = Bf16BitsRne(w);
  }
}

}  // namespace

double CpuSquaredSum(const float* grads, int64_t n, CpuThreadPool& pool) {
  if (n <= 0) return 0;
  std::vector<double> partial(pool.size(), 0.0);
  ForPieces(pool, n, pool.size(), [&](int64_t begin, int64_t end, int t) {
    // Blocks of fp32 sums (vectorisable) folded into a double.
    double s = 0;
    for (int64_t b = begin; b < end; b += 1024) {
      const int64_t e = std::min(end, b + 1024);
      float block = 0;
      for (int64_t i = b; i < e; ++i) block += grads[i] * grads[i];
      s += block;
    }
    partial[t] = s;
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

Status CpuAdamWUpdate(const float* grads, float grad_scale, float* master, float* m, float* v,
                      uint16_t* weights, std::span<const CpuAdamWRun> runs, const CpuAdamWHyper& h,
                      CpuThreadPool& pool) {
  if (h.step < 1)
    return Status::InvalidArgument(
        fmt::format("CpuAdamWUpdate: step must be >= 1, got {}", h.step));
  for (size_t r = 0; r < runs.size(); ++r)
    if (runs[r].begin < 0 || runs[r].end < runs[r].begin ||
        (r > 0 && runs[r].begin != runs[r - 1].end))
      return Status::InvalidArgument(
          fmt::format("CpuAdamWUpdate: runs must be contiguous and in order: run {} is [{}, {})", r,
                      runs[r].begin, runs[r].end));
  if (runs.empty() || runs.front().begin == runs.back().end) return Status::Ok();
  if (!grads || !master || !m || !v || !weights)
    return Status::InvalidArgument("CpuAdamWUpdate: null array");
  const AdamWConstants decay = Constants(h, h.weight_decay), no_decay = Constants(h, 0.0f);
  const int64_t first = runs.front().begin, n = runs.back().end - first;
  const int parties =
      static_cast<int>(std::clamp<int64_t>(n / kCpuAdamMinPerThread, 1, pool.size()));
  ForPieces(pool, n, parties, [&](int64_t begin, int64_t end, int) {
    begin += first, end += first;
    // The runs this piece meets, each clipped to it.
    for (const CpuAdamWRun& run : runs) {
      const int64_t b = std::max(begin, run.begin), e = std::min(end, run.end);
      if (b < e)
        AdamWPiece(grads, grad_scale, master, m, v, weights, b, e, run.decay ? decay : no_decay);
    }
  });
  return Status::Ok();
}

double CpuSquaredSum(const float* grads, int64_t n, int threads) {
  if (n <= 0 || threads < 1) return 0;
  CpuThreadPool pool(threads);
  return CpuSquaredSum(grads, n, pool);
}

Status CpuAdamWUpdate(const float* grads, float grad_scale, float* master, float* m, float* v,
                      uint16_t* weights, int64_t n, const CpuAdamWHyper& h, int threads) {
  if (n < 0)
    return Status::InvalidArgument(fmt::format("CpuAdamWUpdate: n must be >= 0, got {}", n));
  if (threads < 1)
    return Status::InvalidArgument(
        fmt::format("CpuAdamWUpdate: threads must be >= 1, got {}", threads));
  CpuThreadPool pool(threads);
  const CpuAdamWRun all{0, n, true};
  return CpuAdamWUpdate(grads, grad_scale, master, m, v, weights, {&all, 1}, h, pool);
}

}  // namespace p3d
