#include "simulator/attention_kernels.h"

#include <cmath>
#include <string_view>

namespace p3d {
namespace {

// Shah et al., "FlashAttention-3" (arXiv 2407.08608), Figures 5 and 6: H100
// 80GB SXM5, bf16, head dim 128, batch x seq = 16k tokens, TFLOP/s of the
// forward with the causal mask and of the backward, per kernel.
constexpr int kPoints = 6;
constexpr double kSeq[kPoints] = {512, 1024, 2048, 4096, 8192, 16384};
struct KernelCurve {
  double forward[kPoints];
  double backward[kPoints];
};
constexpr KernelCurve kHopperCudnn = {{315, 410, 484, 518, 529, 539},
                                      {305, 408, 465, 499, 518, 516}};
constexpr KernelCurve kHopperFlash2 = {{191, 260, 298, 319, 333, 335},
                                       {214, 260, 291, 310, 318, 322}};
constexpr KernelCurve kHopperFlash3 = {{292, 423, 521, 579, 602, 616},
                                       {316, 424, 501, 542, 559, 561}};

// The cards of that figure's architecture (Hopper, sm_90): the kernels are
// the same code on each, so their ratio carries over.
bool Hopper(const GpuSpec& gpu) {
  for (std::string_view name : {"h100-sxm", "h100-pcie", "h200", "h800"})
    if (gpu.name == name) return true;
  return false;
}

double At(const double (&tflops)[kPoints], double seq) {
  if (seq <= kSeq[0]) return tflops[0];
  for (int i = 1; i < kPoints; ++i) {
    if (seq <= kSeq[i]) {
      const double f = std::log(seq / kSeq[i - 1]) / std::log(kSeq[i] / kSeq[i - 1]);
      return tflops[i - 1] + f * (tflops[i] - tflops[i - 1]);
    }
  }
  return tflops[kPoints - 1];
}

}  // namespace

double AttentionKernelSpeed(const GpuSpec& gpu, AttentionKernel kernel, double seq,
                            AttentionPass pass) {
  if (kernel == AttentionKernel::kCudnn || !Hopper(gpu)) return 1.0;
  const KernelCurve& k =
      kernel == AttentionKernel::kFlashAttention2 ? kHopperFlash2 : kHopperFlash3;
  const bool fwd = pass == AttentionPass::kForward;
  return At(fwd ? k.forward : k.backward, seq) /
         At(fwd ? kHopperCudnn.forward : kHopperCudnn.backward, seq);
}

}  // namespace p3d
