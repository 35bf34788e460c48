#include "executor/calibrate/cpu_adam_probe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "executor/host/cpu_adam.h"

namespace p3d {
namespace {

constexpr int kMaxTimedSteps = 10;

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename T>
std::unique_ptr<T[]> Allocate(int64_t n) {
  return std::unique_ptr<T[]>(new (std::nothrow) T[static_cast<size_t>(n)]);
}

// One element's state, for the scalar reference.
struct Element {
  int64_t index;
  float grad, master, m, v;
};

// The update for one element, restated from the GPU kernel (optimizer.cu).
Element ScalarAdamW(Element e, float scale, const CpuAdamWHyper& h) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const float g = e.grad * scale;
  e.m = h.beta1 * e.m + (1.0f - h.beta1) * g;
  e.v = h.beta2 * e.v + (1.0f - h.beta2) * g * g;
  const float w = e.master * static_cast<float>(1.0 - static_cast<double>(h.lr) * h.weight_decay);
  e.master = w - static_cast<float>(h.lr / bc1) * e.m /
                     (std::sqrt(e.v) * static_cast<float>(1.0 / std::sqrt(bc2)) + h.eps);
  return e;
}

Status CheckClose(const char* what, int64_t i, float got, float want, float floor) {
  if (std::fabs(got - want) <= 4 * FLT_EPSILON * std::max(std::fabs(want), floor))
    return Status::Ok();
  return Status::Internal(
      fmt::format("cpu_adam probe: {}[{}] = {:.9g} after one step, the scalar AdamW gives {:.9g}",
                  what, i, got, want));
}

}  // namespace

StatusOr<nlohmann::json> ProbeCpuAdam(int64_t params, int threads, double max_seconds) {
  if (params < 1)
    return Status::InvalidArgument(fmt::format("cpu_adam probe: params = {} must be >= 1", params));
  if (threads < 0)
    return Status::InvalidArgument(
        fmt::format("cpu_adam probe: threads = {} must be >= 0", threads));
  if (!(max_seconds > 0))
    return Status::InvalidArgument(
        fmt::format("cpu_adam probe: max_seconds = {} must be > 0", max_seconds));
  const auto start = Clock::now();
  if (threads == 0) threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  auto grads = Allocate<float>(params), master = Allocate<float>(params),
       m = Allocate<float>(params), v = Allocate<float>(params);
  auto weights = Allocate<uint16_t>(params);
  if (!grads || !master || !m || !v || !weights)
    return Status::Infeasible(
        fmt::format("cpu_adam probe: cannot allocate {:.2f} GB for {} parameters (18 bytes each); "
                    "use fewer",
                    params * 18e-9, params));
  for (int64_t i = 0; i < params; ++i) {
    grads[i] = 1e-3f * static_cast<float>((i * 2654435761u) % 2001) - 1.0f;
    master[i] = 0.02f * static_cast<float>(i % 101) / 101.0f - 0.01f;
    m[i] = 1e-4f * static_cast<float>(i % 13) - 6e-4f;
    v[i] = 1e-6f * static_cast<float>(i % 7);
  }
  std::vector<Element> sample;
  for (int64_t i : {int64_t{0}, params / 3, params / 2 + 7, params - 1})
    if (i < params) sample.push_back({i, grads[i], master[i], m[i], v[i]});

  CpuThreadPool pool(threads);
  CpuAdamWHyper h{.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  std::vector<double> norm_s, update_s;
  for (h.step = 1;; ++h.step) {
    auto t = Clock::now();
    const double norm = std::sqrt(CpuSquaredSum(grads.get(), params, pool));
    const float scale = static_cast<float>(std::fmin(1.0, 1.0 / (norm + 1e-6)));
    const double norm_time = Since(t);
    t = Clock::now();
    for (int64_t b = 0; b < params; b += kOffloadChunkElements) {
      const CpuAdamWRun run{b, std::min(params, b + kOffloadChunkElements), true};
      P3D_RETURN_IF_ERROR(CpuAdamWUpdate(grads.get(), scale, master.get(), m.get(), v.get(),
                                         weights.get(), {&run, 1}, h, pool));
    }
    const double update_time = Since(t);
    if (h.step == 1) {  // the warm-up: check it
      for (const Element& e : sample) {
        const Element want = ScalarAdamW(e, scale, h);
        const int64_t i = e.index;
        P3D_RETURN_IF_ERROR(CheckClose("master", i, master[i], want.master, h.lr));
        P3D_RETURN_IF_ERROR(CheckClose("m", i, m[i], want.m, FLT_MIN));
        P3D_RETURN_IF_ERROR(CheckClose("v", i, v[i], want.v, FLT_MIN));
        if (std::abs(int{weights[i]} - int{Bf16BitsRne(want.master)}) > 1)
          return Status::Internal(fmt::format(
              "cpu_adam probe: weights[{}] = bf16 0x{:04x} after one step, the scalar AdamW "
              "gives 0x{:04x}",
              i, weights[i], Bf16BitsRne(want.master)));
      }
      continue;
    }
    norm_s.push_back(norm_time);
    update_s.push_back(update_time);
    if (static_cast<int>(update_s.size()) >= kMaxTimedSteps || Since(start) >= max_seconds) break;
  }
  const double seconds = Median(update_s);
  return nlohmann::json{{"params", params},
                        {"threads", threads},
                        {"chunk_elements", kOffloadChunkElements},
                        {"steps", update_s.size()},
                        {"seconds_per_step", seconds},
                        {"params_per_s", static_cast<double>(params) / seconds},
                        {"norm_seconds_per_step", Median(norm_s)}};
}

}  // namespace p3d
