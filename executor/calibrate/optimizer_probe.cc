// Optimizer probe (probes.h): the executor's optimizer step (gradient norm
// partials, clip scale, AdamW; executor/kernels/optimizer.h) over one flat
// buffer, timed, with a few updated parameters checked against the CPU.
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "executor/calibrate/probes.h"
#include "executor/kernels/elementwise.h"
#include "executor/kernels/optimizer.h"

namespace p3d {
namespace {

// Bytes per parameter of one step as the simulator counts them
// (simulator/compute_model.h OptimizerSeconds): the norm reads the fp32
// gradient (4); AdamW reads gradient, master, m, v (16) and writes master,
// m, v (12) and the bf16 weight (2).
constexpr double kBytesPerParam = 34;

struct Host {
  float grad, master, m, v;
};

}  // namespace

StatusOr<nlohmann::json> ProbeOptimizer(int64_t params, const Progress& progress,
                                        cudaStream_t stream) {
  const int64_t n = params / 8 * 8;
  float *grads = nullptr, *master = nullptr, *m = nullptr, *v = nullptr, *scalars = nullptr;
  double* partials = nullptr;
  bf16* weights = nullptr;
  for (float** p : {&grads, &master, &m, &v}) P3D_CAL_CUDA(cudaMalloc(p, n * sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&weights, n * sizeof(bf16)));
  P3D_CAL_CUDA(cudaMalloc(&scalars, 2 * sizeof(float)));
  P3D_CAL_CUDA(cudaMalloc(&partials, kGradNormBlocks * sizeof(double)));
  P3D_RETURN_IF_ERROR(InitNormal(grads, n, 1e-3f, 31, 0, stream));
  P3D_RETURN_IF_ERROR(InitNormal(master, n, 0.02f, 31, 1, stream));
  P3D_RETURN_IF_ERROR(Fill(m, n, 0.0f, stream));
  P3D_RETURN_IF_ERROR(Fill(v, n, 0.0f, stream));
  P3D_CAL_CUDA(cudaStreamSynchronize(stream));  // `stream` does not order with cudaMemcpy's
  AdamWHyper h;
  h.weight_decay = 0.1f;
  const float max_norm = 1.0f;
  auto step = [&]() -> Status {
    P3D_RETURN_IF_ERROR(GradSquaredSumPartials(grads, n, partials, stream));
    P3D_RETURN_IF_ERROR(ClipScaleFromPartials(partials, max_norm, scalars, scalars + 1, stream));
    return AdamWUpdate(grads, scalars + 1, master, m, v, weights, n, h, stream);
  };
  // One checked step from m = v = 0 (t = 1).
  const int64_t probe[] = {0, n / 2 + 3, n - 1};
  std::vector<Host> before;
  for (int64_t i : probe) {
    Host x;
    P3D_CAL_CUDA(cudaMemcpy(&x.grad, grads + i, 4, cudaMemcpyDeviceToHost));
    P3D_CAL_CUDA(cudaMemcpy(&x.master, master + i, 4, cudaMemcpyDeviceToHost));
    before.push_back(x);
  }
  P3D_RETURN_IF_ERROR(step());
  P3D_CAL_CUDA(cudaStreamSynchronize(stream));
  float norm_scale[2];
  P3D_CAL_CUDA(cudaMemcpy(norm_scale, scalars, sizeof(norm_scale), cudaMemcpyDeviceToHost));
  const double want_scale = std::min(1.0, max_norm / (norm_scale[0] + 1e-6));
  if (std::fabs(norm_scale[1] - want_scale) > 1e-6 * want_scale)
    return Status::Internal(fmt::format("optimizer probe: clip scale {} for norm {}, want {}",
                                        norm_scale[1], norm_scale[0], want_scale));
  for (size_t c = 0; c < before.size(); ++c) {
    const double g = before[c].grad * static_cast<double>(norm_scale[1]);
    const double mm = (1 - h.beta1) * g, vv = (1 - h.beta2) * g * g;
    const double mhat = mm / (1 - h.beta1), vhat = vv / (1 - h.beta2);
    const double want = before[c].master * (1 - h.lr * h.weight_decay) -
                        h.lr * mhat / (std::sqrt(vhat) + h.eps);
    float got = 0;
    P3D_CAL_CUDA(cudaMemcpy(&got, master + probe[c], 4, cudaMemcpyDeviceToHost));
    if (std::fabs(got - want) > 1e-6 * std::fabs(want) + 1e-9)
      return Status::Internal(fmt::format("optimizer probe: AdamW gave {} at element {}, want {}",
                                          got, probe[c], want));
  }
  h.step = 2;
  P3D_ASSIGN_OR_RETURN(double seconds, TimeLaunches(step, 1, 5, stream));
  for (float* p : {grads, master, m, v, scalars}) cudaFree(p);
  cudaFree(weights);
  cudaFree(partials);
  progress.Say(fmt::format("optimizer: norm + AdamW over {:.0f} M params {:.3f} ms, {:.0f} GB/s "
                           "at {} bytes/param (checked)",
                           n / 1e6, seconds * 1e3, n * kBytesPerParam / seconds / 1e9,
                           kBytesPerParam));
  return nlohmann::json{{"kernels", "GradSquaredSumPartials + ClipScaleFromPartials + AdamWUpdate "
                                    "(executor/kernels/optimizer.h)"},
                        {"params", n},
                        {"bytes_per_param", kBytesPerParam},
                        {"seconds", seconds}};
}

}  // namespace p3d
