// FP8 GEMM probe (probes.h ProbeFp8Gemms): the three GEMMs of each
// linear-layer shape as Transformer Engine runs them under an FP8 recipe,
// E4M3 x E4M3 -> bf16 through executor/fp8_matmul.h, timed and spot-checked
// against a CPU dot product of the dequantized inputs.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "executor/calibrate/probes.h"
#include "executor/fp8_matmul.h"
#include "executor/kernels/elementwise.h"

namespace p3d {
namespace {

// Entries checked per GEMM, and the tolerance on |got - want| / sqrt(sum of
// squared products): the inputs are exactly representable (the CPU reads the
// same E4M3 bytes), so only the fp32 accumulation and the bf16 output
// rounding (2^-9 relative) remain: 0.02 as for the bf16 probe.
constexpr int kChecks = 4;
constexpr double kTolerance = 0.02;
// Quantization scale of the inputs (dequantization 1/kScale): exercises the
// scale pointers; N(0,1) x 8 stays far inside E4M3's +-448.
constexpr float kScale = 8.0f;

struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() { cudaFree(p); }
};

// Random normal E4M3 [elems] at quantization scale kScale.
Status RandomFp8(DeviceBuffer* buf, int64_t elems, uint64_t stream_id, float* tmp, cudaStream_t s) {
  P3D_CAL_CUDA(cudaMalloc(&buf->p, elems));
  P3D_RETURN_IF_ERROR(InitNormal(tmp, elems, 1.0f, 11, stream_id, s));
  return QuantizeE4m3(tmp, static_cast<fp8e4m3*>(buf->p), elems, kScale, s);
}

// Row `r` of a row-major E4M3 matrix with `cols` columns, dequantized.
Status Row(const fp8e4m3* m, int64_t cols, int64_t r, std::vector<double>* out) {
  std::vector<fp8e4m3> raw(cols);
  P3D_CAL_CUDA(cudaMemcpy(raw.data(), m + r * cols, cols, cudaMemcpyDeviceToHost));
  out->resize(cols);
  for (int64_t i = 0; i < cols; ++i) (*out)[i] = static_cast<float>(raw[i]) / kScale;
  return Status::Ok();
}

// D = A B^T (Fp8MatmulParams) at kChecks entries against the CPU; worst error.
StatusOr<double> Check(const Fp8MatmulParams& p, const std::string& what) {
  double worst = 0;
  for (int c = 0; c < kChecks; ++c) {
    const int64_t i = (c * 7919 + 13) % p.m, j = (c * 104729 + 7) % p.n;
    std::vector<double> u, v;
    P3D_RETURN_IF_ERROR(Row(p.a, p.k, i, &u));
    P3D_RETURN_IF_ERROR(Row(p.b, p.k, j, &v));
    double want = 0, scale = 0;
    for (int64_t t = 0; t < p.k; ++t) want += u[t] * v[t], scale += u[t] * v[t] * u[t] * v[t];
    bf16 g;
    P3D_CAL_CUDA(cudaMemcpy(&g, p.d + i * p.n + j, 2, cudaMemcpyDeviceToHost));
    const double got = __bfloat162float(g);
    const double err = std::fabs(got - want) / std::max(std::sqrt(scale), 1e-30);
    if (!(err <= kTolerance))
      return Status::Internal(fmt::format("{}: entry ({}, {}) is {}, the CPU gives {} from the dequantized inputs "
                                          "(error {:.3g} of the sum's scale, tolerance {})",
                                          what, i, j, got, want, err, kTolerance));
    worst = std::max(worst, err);
  }
  return worst;
}

int RepsFor(double flops) { return std::clamp(static_cast<int>(0.02 / (flops / 1.2e15)), 3, 50); }

}  // namespace

StatusOr<nlohmann::json> ProbeFp8Gemms(const std::vector<GemmShapeToMeasure>& shapes, const Progress& progress,
                                       cudaStream_t stream, int* skipped) {
  DeviceBuffer ws, scale;
  P3D_CAL_CUDA(cudaMalloc(&ws.p, size_t{32} << 20));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Fp8Matmul> mm, Fp8Matmul::Create(ws.p, size_t{32} << 20));
  P3D_CAL_CUDA(cudaMalloc(&scale.p, sizeof(float)));
  const float dequant = 1.0f / kScale;
  P3D_CAL_CUDA(cudaMemcpy(scale.p, &dequant, sizeof(float), cudaMemcpyHostToDevice));
  const float* s = static_cast<const float*>(scale.p);
  nlohmann::json out = nlohmann::json::array();
  *skipped = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const LinearGemmShape& g = shapes[i].shape;
    const int64_t m = g.m, n = g.n, k = g.k;
    // cuBLASLt's FP8 kernels need every contracted dimension % 16 (k, n, m
    // across the three GEMMs); the LM head stays bf16 under TE anyway.
    if (m % 16 || n % 16 || k % 16) {
      ++*skipped;
      continue;
    }
    if (progress.out_of_time()) {
      *skipped += static_cast<int>(shapes.size() - i);
      progress.Say(fmt::format("fp8 gemm: out of time, {} shapes skipped", shapes.size() - i));
      break;
    }
    // x [m,k], W [n,k], dy [m,n]; the backward's transposed copies (W^T
    // [k,n], dy^T [n,m], x^T [k,m]) reuse the same bytes read the other way.
    DeviceBuffer x, w, dy, y, dx, dw, tmp;
    P3D_CAL_CUDA(cudaMalloc(&tmp.p, std::max({m * k, n * k, m * n}) * sizeof(float)));
    float* t = static_cast<float*>(tmp.p);
    P3D_RETURN_IF_ERROR(RandomFp8(&x, m * k, 1, t, stream));
    P3D_RETURN_IF_ERROR(RandomFp8(&w, n * k, 2, t, stream));
    P3D_RETURN_IF_ERROR(RandomFp8(&dy, m * n, 3, t, stream));
    P3D_CAL_CUDA(cudaMalloc(&y.p, m * n * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&dx.p, m * k * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&dw.p, n * k * sizeof(bf16)));
    auto* X = static_cast<const fp8e4m3*>(x.p);
    auto* W = static_cast<const fp8e4m3*>(w.p);
    auto* DY = static_cast<const fp8e4m3*>(dy.p);
    // TE's GEMM settings: forward with fast accumulation (current scaling's
    // fprop), the gradients with promoted (split) accumulation.
    const Fp8MatmulParams fwd{m, n, k, X, W, s, s, static_cast<bf16*>(y.p), true};
    const Fp8MatmulParams bdx{m, k, n, DY, W, s, s, static_cast<bf16*>(dx.p), false};
    const Fp8MatmulParams bdw{n, k, m, DY, X, s, s, static_cast<bf16*>(dw.p), false};
    const Fp8MatmulParams* layouts[3] = {&fwd, &bdx, &bdw};
    for (const Fp8MatmulParams* p : layouts) P3D_RETURN_IF_ERROR(mm->Run(*p, stream));
    P3D_CAL_CUDA(cudaStreamSynchronize(stream));
    double err = 0;
    const char* names[3] = {" forward", " input-grad", " weight-grad"};
    for (int l = 0; l < 3; ++l) {
      P3D_ASSIGN_OR_RETURN(double e, Check(*layouts[l], g.label + names[l]));
      err = std::max(err, e);
    }
    const int reps = RepsFor(g.flops());
    double seconds[3];
    for (int l = 0; l < 3; ++l) {
      P3D_ASSIGN_OR_RETURN(seconds[l],
                           TimeLaunches([&]() { return mm->Run(*layouts[l], stream); }, 2, reps, stream));
    }
    const double f = g.flops();
    progress.Say(fmt::format("fp8 gemm {:3}/{} {:<28} {:>6}x{:>6}x{:>6}  fwd {:4.0f}  dx {:4.0f}  dw {:4.0f} "
                             "TFLOP/s  (checked, max error {:.1e})",
                             i + 1, shapes.size(), g.label, m, n, k, f / seconds[0] / 1e12, f / seconds[1] / 1e12,
                             f / seconds[2] / 1e12, err));
    out.push_back({{"label", g.label}, {"source", shapes[i].source}, {"m", m}, {"n", n}, {"k", k},
                   {"fwd_s", seconds[0]}, {"dx_s", seconds[1]}, {"dw_s", seconds[2]}, {"reps", reps},
                   {"max_check_error", err}});
  }
  return out;
}

}  // namespace p3d
