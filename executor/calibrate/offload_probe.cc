// Offloaded-step probe (probes.h): the executor's HostOptimizer stepping
// `params` parameters exactly as an optimizer-offload run does: gradient
// chunks copied down over PCIe, the pooled CPU AdamW, bf16 weights copied up,
// all pipelined. The CPU update shares host memory bandwidth with the pinned
// copies, so its rate here is what a run sees (below the CPU-only probe's).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "executor/calibrate/probes.h"
#include "executor/kernels/elementwise.h"
#include "executor/offload/host_optimizer.h"

namespace p3d {

namespace {

// One size: the median of 3 timed steps after a checked first step.
StatusOr<nlohmann::json> MeasureOffloadStep(int64_t params, const Progress& progress,
                                            cudaStream_t stream) {
  const int64_t n = params / 8 * 8;
  float *grads = nullptr, *init = nullptr, *scale = nullptr;
  bf16* weights = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&grads, n * sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&init, n * sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&scale, sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&weights, n * sizeof(bf16)));
  P3D_RETURN_IF_ERROR(InitNormal(grads, n, 1e-3f, 37, 0, stream));
  P3D_RETURN_IF_ERROR(InitNormal(init, n, 0.02f, 37, 1, stream));
  P3D_RETURN_IF_ERROR(Fill(scale, 1, 1.0f, stream));
  P3D_CAL_CUDA(cudaStreamSynchronize(stream));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<HostOptimizer> opt,
                       HostOptimizer::Create(n, {{0, n, true}}, HostOptimizerOptions{}));
  const OffloadSlice init_slice{0, n, init, nullptr};
  P3D_RETURN_IF_ERROR(opt->InitMaster({&init_slice, 1}, stream));
  const OffloadSlice slice{0, n, grads, weights};
  AdamWHyper h;
  h.weight_decay = 0.1f;
  // Step 1 checked: from m = v = 0, w1 = w0 (1 - lr wd) - lr g / (|g| + eps).
  const int64_t probe[] = {0, n / 3, n - 1};
  std::vector<float> w0, g;
  for (int64_t i : probe) {
    float x = 0, y = 0;
    P3D_CAL_CUDA(cudaMemcpy(&x, init + i, 4, cudaMemcpyDeviceToHost));
    P3D_CAL_CUDA(cudaMemcpy(&y, grads + i, 4, cudaMemcpyDeviceToHost));
    w0.push_back(x), g.push_back(y);
  }
  P3D_RETURN_IF_ERROR(opt->Step({&slice, 1}, scale, h, stream));
  P3D_CAL_CUDA(cudaStreamSynchronize(stream));
  for (size_t c = 0; c < w0.size(); ++c) {
    const double want = w0[c] * (1 - h.lr * h.weight_decay) -
                        h.lr * g[c] / (std::fabs(g[c]) + h.eps);
    bf16 got;
    P3D_CAL_CUDA(cudaMemcpy(&got, weights + probe[c], sizeof(bf16), cudaMemcpyDeviceToHost));
    // One bf16 rounding of the fp32 master: within 2^-8 relative.
    if (std::fabs(__bfloat162float(got) - want) > std::fabs(want) / 256 + 1e-8)
      return Status::Internal(fmt::format("offload probe: weight {} is {} after one step, want {}",
                                          probe[c], __bfloat162float(got), want));
  }
  std::vector<OffloadStepStats> stats(3);
  for (size_t t = 0; t < stats.size(); ++t) {
    h.step = static_cast<int64_t>(t) + 2;
    P3D_RETURN_IF_ERROR(opt->Step({&slice, 1}, scale, h, stream, &stats[t]));
  }
  std::sort(stats.begin(), stats.end(),
            [](const auto& a, const auto& b) { return a.step_s < b.step_s; });
  const OffloadStepStats& s = stats[stats.size() / 2];
  const int threads = opt->threads();
  opt.reset();
  for (void* p : {static_cast<void*>(grads), static_cast<void*>(init), static_cast<void*>(scale),
                  static_cast<void*>(weights)})
    cudaFree(p);
  progress.Say(fmt::format(
      "offload step: {} M params in {:.1f} ms = {:.2f} G params/s ({} threads; CPU AdamW {:.2f} "
      "G/s inside it, gradients down {:.1f} GB/s, weights up {:.1f} GB/s; checked)",
      n >> 20, s.step_s * 1e3, n / s.step_s / 1e9, threads, n / s.cpu_adam_s / 1e9,
      s.d2h_bytes / s.d2h_s / 1e9, s.h2d_bytes / s.h2d_s / 1e9));
  return nlohmann::json{{"params", n},
                        {"threads", threads},
                        {"chunks", s.chunks},
                        {"seconds_per_step", s.step_s},
                        {"params_per_s", n / s.step_s},
                        {"cpu_adam_s", s.cpu_adam_s},
                        {"cpu_params_per_s", n / s.cpu_adam_s},
                        {"d2h_bytes_per_s", s.d2h_bytes / s.d2h_s},
                        {"h2d_bytes_per_s", s.h2d_bytes / s.h2d_s}};
}

}  // namespace

// Two sizes, n and 4n: the CPU update's time inside the step is a fixed cost
// (pipeline fill and drain, thread wake-ups per chunk) plus a marginal one;
// the rate the time model scales shards by is the marginal
// (4n - n) / (t(4n) - t(n)). The time model adds the fill itself.
StatusOr<nlohmann::json> ProbeOffloadStep(int64_t params, const Progress& progress,
                                          cudaStream_t stream) {
  P3D_ASSIGN_OR_RETURN(nlohmann::json small, MeasureOffloadStep(params, progress, stream));
  P3D_ASSIGN_OR_RETURN(nlohmann::json large, MeasureOffloadStep(4 * params, progress, stream));
  const double n1 = small["params"].get<double>(), n2 = large["params"].get<double>();
  const double t1 = small["cpu_adam_s"].get<double>(), t2 = large["cpu_adam_s"].get<double>();
  if (!(t2 > t1))
    return Status::Internal(fmt::format(
        "offload probe: the CPU update of {} params took {} s, not longer than {} s for {}", n2,
        t2, t1, n1));
  const double rate = (n2 - n1) / (t2 - t1);
  progress.Say(fmt::format("offload step: marginal CPU AdamW rate inside the step {:.2f} G params/s, "
                           "fixed {:.1f} ms",
                           rate / 1e9, (t1 - n1 / rate) * 1e3));
  return nlohmann::json{{"sizes", {small, large}},
                        {"params", n2 - n1},
                        {"cpu_adam_s", t2 - t1},
                        {"cpu_params_per_s", rate}};
}

}  // namespace p3d
