// GEMM probe (probes.h): the three layouts of each linear-layer shape, as
// executor/model.cu runs them, timed and spot-checked against the CPU.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "executor/calibrate/probes.h"
#include "executor/dtype.h"
#include "executor/kernels/elementwise.h"
#include "executor/matmul.h"

namespace p3d {
namespace {

// Entries checked per layout; tolerance on |got - want| / sqrt(sum of squared
// products): bf16 output rounding is 2^-9 relative, fp32 accumulation far less.
constexpr int kChecks = 4;
constexpr double kTolerance = 0.02;

// Column c (or row r) of a row-major bf16 matrix [rows, cols], as floats.
Status Slice(const bf16* m, int64_t rows, int64_t cols, int64_t index, bool column,
             std::vector<float>* out) {
  const int64_t len = column ? rows : cols;
  std::vector<bf16> raw(len);
  if (column) {
    P3D_CAL_CUDA(cudaMemcpy2D(raw.data(), sizeof(bf16), m + index, cols * sizeof(bf16),
                              sizeof(bf16), rows, cudaMemcpyDeviceToHost));
  } else {
    P3D_CAL_CUDA(
        cudaMemcpy(raw.data(), m + index * cols, cols * sizeof(bf16), cudaMemcpyDeviceToHost));
  }
  out->resize(len);
  for (int64_t i = 0; i < len; ++i) (*out)[i] = __bfloat162float(raw[i]);
  return Status::Ok();
}

// Checks D[i,j] = sum_t u[t] v[t] for kChecks (i, j), where u and v are
// fetched by `operands(i, j)`; D is bf16 or fp32 [rows, cols].
template <typename Operands>
StatusOr<double> Check(const void* d, bool fp32, int64_t rows, int64_t cols, Operands&& operands,
                       const std::string& what) {
  double worst = 0;
  for (int c = 0; c < kChecks; ++c) {
    const int64_t i = (c * 7919 + 13) % rows, j = (c * 104729 + 7) % cols;
    std::vector<float> u, v;
    P3D_RETURN_IF_ERROR(operands(i, j, &u, &v));
    double want = 0, scale = 0;
    for (size_t t = 0; t < u.size(); ++t) {
      want += static_cast<double>(u[t]) * v[t];
      scale += static_cast<double>(u[t]) * v[t] * u[t] * v[t];
    }
    double got = 0;
    if (fp32) {
      float g;
      P3D_CAL_CUDA(
          cudaMemcpy(&g, static_cast<const float*>(d) + i * cols + j, 4, cudaMemcpyDeviceToHost));
      got = g;
    } else {
      bf16 g;
      P3D_CAL_CUDA(
          cudaMemcpy(&g, static_cast<const bf16*>(d) + i * cols + j, 2, cudaMemcpyDeviceToHost));
      got = __bfloat162float(g);
    }
    const double err = std::fabs(got - want) / std::max(std::sqrt(scale), 1e-30);
    if (!(err <= kTolerance))
      return Status::Internal(
          fmt::format("{}: entry ({}, {}) is {}, the CPU gives {} (error {:.3g} "
                      "of the sum's scale, tolerance {})",
                      what, i, j, got, want, err, kTolerance));
    worst = std::max(worst, err);
  }
  return worst;
}

struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() { cudaFree(p); }
};

// Random normal bf16 [elems] (zeros would run faster than real data).
Status Random(DeviceBuffer* buf, int64_t elems, uint64_t stream_id, float* tmp, cudaStream_t s) {
  P3D_CAL_CUDA(cudaMalloc(&buf->p, elems * sizeof(bf16)));
  P3D_RETURN_IF_ERROR(InitNormal(tmp, elems, 1.0f, 5, stream_id, s));
  return CastToBf16(tmp, static_cast<bf16*>(buf->p), elems, s);
}

// Repetitions so that one timed batch lasts ~20 ms (at least 3, at most 50).
int RepsFor(double flops) { return std::clamp(static_cast<int>(0.02 / (flops / 6e14)), 3, 50); }

}  // namespace

StatusOr<nlohmann::json> ProbeGemms(const std::vector<GemmShapeToMeasure>& shapes,
                                    const Progress& progress, cudaStream_t stream, int* skipped) {
  DeviceBuffer ws;
  P3D_CAL_CUDA(cudaMalloc(&ws.p, Matmul::kWorkspaceBytes));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Matmul> mm, Matmul::Create(ws.p, Matmul::kWorkspaceBytes));
  nlohmann::json out = nlohmann::json::array();
  *skipped = 0;
  for (size_t s = 0; s < shapes.size(); ++s) {
    if (progress.out_of_time()) {
      *skipped = static_cast<int>(shapes.size() - s);
      progress.Say(fmt::format("gemm: out of time, {} shapes skipped", *skipped));
      break;
    }
    const LinearGemmShape& g = shapes[s].shape;
    const int64_t m = g.m, n = g.n, k = g.k;
    // x [m,k], W [n,k], dy [m,n]; y [m,n] bf16, dx [m,k] bf16, dW [n,k] fp32.
    DeviceBuffer x, w, dy, y, dx, dw, tmp;
    P3D_CAL_CUDA(cudaMalloc(&tmp.p, std::max({m * k, n * k, m * n}) * sizeof(float)));
    float* t = static_cast<float*>(tmp.p);
    P3D_RETURN_IF_ERROR(Random(&x, m * k, 1, t, stream));
    P3D_RETURN_IF_ERROR(Random(&w, n * k, 2, t, stream));
    P3D_RETURN_IF_ERROR(Random(&dy, m * n, 3, t, stream));
    P3D_CAL_CUDA(cudaMalloc(&y.p, m * n * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&dx.p, m * k * sizeof(bf16)));
    P3D_CAL_CUDA(cudaMalloc(&dw.p, n * k * sizeof(float)));
    P3D_CAL_CUDA(cudaMemsetAsync(dw.p, 0, n * k * sizeof(float), stream));
    const bf16 *X = static_cast<bf16*>(x.p), *W = static_cast<bf16*>(w.p),
               *DY = static_cast<bf16*>(dy.p);

    MatmulParams fwd;  // y = x @ W^T
    fwd.m = m, fwd.n = n, fwd.k = k, fwd.a = X, fwd.b = W, fwd.trans_b = true, fwd.d = y.p;
    MatmulParams bdx;  // dx = dy @ W
    bdx.m = m, bdx.n = k, bdx.k = n, bdx.a = DY, bdx.b = W, bdx.d = dx.p;
    MatmulParams bdw;  // dW += dy^T @ x (fp32)
    bdw.m = n, bdw.n = k, bdw.k = m, bdw.a = DY, bdw.trans_a = true, bdw.b = X, bdw.d = dw.p;
    bdw.d_type = DType::kF32, bdw.beta = 1.0f;

    // One call of each, checked, before timing (dW starts at zero).
    for (const MatmulParams* p : {&fwd, &bdx, &bdw}) P3D_RETURN_IF_ERROR(mm->Run(*p, stream));
    P3D_CAL_CUDA(cudaStreamSynchronize(stream));
    using Vec = std::vector<float>;
    // y[i,j] = x[i,:] . W[j,:];  dx[i,j] = dy[i,:] . W[:,j];  dW[i,j] = dy[:,i] . x[:,j]
    auto fwd_operands = [&](int64_t i, int64_t j, Vec* u, Vec* v) {
      Status st = Slice(X, m, k, i, false, u);
      return st.ok() ? Slice(W, n, k, j, false, v) : st;
    };
    auto dx_operands = [&](int64_t i, int64_t j, Vec* u, Vec* v) {
      Status st = Slice(DY, m, n, i, false, u);
      return st.ok() ? Slice(W, n, k, j, true, v) : st;
    };
    auto dw_operands = [&](int64_t i, int64_t j, Vec* u, Vec* v) {
      Status st = Slice(DY, m, n, i, true, u);
      return st.ok() ? Slice(X, m, k, j, true, v) : st;
    };
    P3D_ASSIGN_OR_RETURN(double e1, Check(y.p, false, m, n, fwd_operands, g.label + " forward"));
    P3D_ASSIGN_OR_RETURN(double e2, Check(dx.p, false, m, k, dx_operands, g.label + " input-grad"));
    P3D_ASSIGN_OR_RETURN(double e3, Check(dw.p, true, n, k, dw_operands, g.label + " weight-grad"));
    const double err = std::max({e1, e2, e3});

    const int reps = RepsFor(g.flops());
    double seconds[3];
    const MatmulParams* layouts[3] = {&fwd, &bdx, &bdw};
    for (int l = 0; l < 3; ++l) {
      P3D_ASSIGN_OR_RETURN(seconds[l], TimeLaunches([&]() { return mm->Run(*layouts[l], stream); },
                                                    2, reps, stream));
    }
    const double f = g.flops();
    progress.Say(
        fmt::format("gemm {:3}/{} {:<28} {:>6}x{:>6}x{:>6}  fwd {:4.0f}  dx {:4.0f}  dw {:4.0f} "
                    "TFLOP/s  (checked, max error {:.1e})",
                    s + 1, shapes.size(), g.label, m, n, k, f / seconds[0] / 1e12,
                    f / seconds[1] / 1e12, f / seconds[2] / 1e12, err));
    out.push_back({{"label", g.label},
                   {"source", shapes[s].source},
                   {"m", m},
                   {"n", n},
                   {"k", k},
                   {"fwd_s", seconds[0]},
                   {"dx_s", seconds[1]},
                   {"dw_s", seconds[2]},
                   {"reps", reps},
                   {"max_check_error", err}});
  }
  return out;
}

}  // namespace p3d
