#include "executor/host/cpu_adam.h"

#include <fmt/format.h>

#include <cmath>
#include <thread>
#include <vector>

namespace p3d {
namespace {

constexpr int64_t kLine = 16;  // floats per 64-byte cache line

// Runs fn(begin, end) over `threads` contiguous chunks of [0, n), whole cache
// lines each; the calling thread runs chunk 0.
template <typename Fn>
void ForChunks(int64_t n, int threads, Fn fn) {
  const int64_t lines = (n + kLine - 1) / kLine;
  const int64_t per = (lines + threads - 1) / threads * kLine;
  std::vector<std::thread> workers;
  for (int t = 1; t < threads && t * per < n; ++t)
    workers.emplace_back([&, t] { fn(t * per, std::min(n, (t + 1) * per), t); });
  fn(0, std::min(n, per), 0);
  for (std::thread& w : workers) w.join();
}

struct AdamWConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, decay_factor, step_size, inv_sqrt_bc2;
};

// The GPU kernel's per-element update (optimizer.cu AdamWKernel), one chunk.
void AdamWChunk(const float* __restrict grads, float scale, float* __restrict master,
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

double CpuSquaredSum(const float* grads, int64_t n, int threads) {
  if (n <= 0 || threads < 1) return 0;
  std::vector<double> partial(threads, 0.0);
  ForChunks(n, threads, [&](int64_t begin, int64_t end, int t) {
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
                      uint16_t* weights, int64_t n, const CpuAdamWHyper& h, int threads) {
  if (n < 0) return Status::InvalidArgument(fmt::format("CpuAdamWUpdate: n must be >= 0, got {}", n));
  if (h.step < 1)
    return Status::InvalidArgument(fmt::format("CpuAdamWUpdate: step must be >= 1, got {}", h.step));
  if (threads < 1)
    return Status::InvalidArgument(fmt::format("CpuAdamWUpdate: threads must be >= 1, got {}", threads));
  if (n > 0 && (!grads || !master || !m || !v || !weights))
    return Status::InvalidArgument("CpuAdamWUpdate: null array");
  // Bias corrections as the GPU launcher computes them (double, then float).
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const AdamWConstants c{h.beta1,
                         h.beta2,
                         1.0f - h.beta1,
                         1.0f - h.beta2,
                         h.eps,
                         static_cast<float>(1.0 - static_cast<double>(h.lr) * h.weight_decay),
                         static_cast<float>(h.lr / bc1),
                         static_cast<float>(1.0 / std::sqrt(bc2))};
  ForChunks(n, threads, [&](int64_t begin, int64_t end, int) {
    AdamWChunk(grads, grad_scale, master, m, v, weights, begin, end, c);
  });
  return Status::Ok();
}

}  // namespace p3d
