// p3d-gemm-bench: the matrix multiplies of one training step of a model, timed
// one by one through executor/matmul.h (the wrapper p3d-run uses), on random
// bf16 data. Prints each GEMM's shape, count per step, median time and TFLOP/s,
// and the step's total GEMM time if every GEMM ran at its measured speed: the
// floor a step built from these GEMMs cannot beat.
//
//   p3d-gemm-bench --model gpt-1.3b --micro-batch 4 --seq 2048
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <vector>

#include "executor/kernels/elementwise.h"
#include "executor/matmul.h"
#include "executor/param_layout.h"
#include "models/zoo.h"

namespace {

struct Gemm {
  std::string what;
  int64_t m, n, k;
  bool ta, tb;
  p3d::DType out;
  float beta;
  int batch;
  int64_t per_step;          // occurrences per micro-batch
  int64_t lda = 0, ldd = 0;  // 0 = packed; the loss chunk pads V to Vp
};

int Fail(const std::string& msg) {
  std::cerr << "p3d-gemm-bench: " << msg << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_arg;
  int64_t B = 4, S = 2048, chunk = 1024;
  int reps = 20;
  CLI::App app{"p3d-gemm-bench: time a model's training GEMMs through the executor's wrapper"};
  app.add_option("--model", model_arg, "zoo id, size or model file")->required();
  app.add_option("--micro-batch", B, "B");
  app.add_option("--seq", S, "S");
  app.add_option("--logits-chunk", chunk, "tokens per loss chunk");
  app.add_option("--reps", reps, "timed repetitions per GEMM (median reported)");
  CLI11_PARSE(app, argc, argv);
  auto spec = p3d::ResolveModel(model_arg);
  if (!spec.ok()) return Fail(spec.status().ToString());
  const p3d::ModelSpec& m = *spec;
  const int64_t T = B * S, H = m.hidden, HD = m.head_dim(), G = m.heads / m.kv_heads;
  const int64_t Q3 = (m.heads + 2 * m.kv_heads) * HD, F = m.ffn, V = m.vocab, L = m.layers;
  const int64_t Vp = p3d::PaddedVocab(V);
  const int64_t fc = m.arch == p3d::Arch::kGpt2 ? F : 2 * F;
  const int batch = static_cast<int>(B * m.kv_heads);
  using p3d::DType;
  std::vector<Gemm> gemms = {
      {"qkv fwd", T, Q3, H, false, true, DType::kBf16, 0, 1, L},
      {"qkv dx", T, H, Q3, false, false, DType::kBf16, 0, 1, L},
      {"qkv dw", Q3, H, T, true, false, DType::kF32, 1, 1, L},
      {"out fwd", T, H, H, false, true, DType::kBf16, 0, 1, L},
      {"out dx", T, H, H, false, false, DType::kBf16, 0, 1, L},
      {"out dw", H, H, T, true, false, DType::kF32, 1, 1, L},
      {"fc fwd", T, fc, H, false, true, DType::kBf16, 0, 1, L},
      {"fc dx", T, H, fc, false, false, DType::kBf16, 0, 1, L},
      {"fc dw", fc, H, T, true, false, DType::kF32, 1, 1, L},
      {"proj fwd", T, H, F, false, true, DType::kBf16, 0, 1, L},
      {"proj dx", T, F, H, false, false, DType::kBf16, 0, 1, L},
      {"proj dw", H, F, T, true, false, DType::kF32, 1, 1, L},
      {"attn qk^T", G * S, S, HD, false, true, DType::kBf16, 0, batch, L},
      {"attn pv", G * S, HD, S, false, false, DType::kBf16, 0, batch, L},
      {"attn dP", G * S, S, HD, false, true, DType::kBf16, 0, batch, L},
      {"attn dq", G * S, HD, S, false, false, DType::kBf16, 0, batch, L},
      {"attn dk/dv", S, HD, G * S, true, false, DType::kBf16, 0, batch, 2 * L},
      // The LM head as p3d-run runs it: over the padded vocabulary Vp.
      {"head fwd", chunk, Vp, H, false, true, DType::kF32, 0, 1, T / chunk, 0, Vp},
      {"head dx", chunk, H, Vp, false, false, DType::kBf16, 0, 1, T / chunk, Vp, 0},
      {"head dw", Vp, H, chunk, true, false, DType::kF32, 1, 1, T / chunk, Vp, 0},
      // For comparison only (count 0, not in the floor): the same over the odd V.
      {"head fwd V", chunk, V, H, false, true, DType::kF32, 0, 1, 0, 0, Vp},
      {"head dx V", chunk, H, V, false, false, DType::kBf16, 0, 1, 0, Vp, 0},
      {"head dw V", V, H, chunk, true, false, DType::kF32, 1, 1, 0, Vp, 0},
  };
  void* ws = nullptr;
  if (cudaMalloc(&ws, p3d::Matmul::kWorkspaceBytes) != cudaSuccess)
    return Fail("cudaMalloc failed");
  auto mm = p3d::Matmul::Create(ws, p3d::Matmul::kWorkspaceBytes);
  if (!mm.ok()) return Fail(mm.status().ToString());
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  double floor_s = 0, flops_step = 0;
  std::cout << fmt::format("{:<12} {:>7} {:>7} {:>7} {:>6} {:>6} {:>10} {:>9}\n", "gemm", "m", "n",
                           "k", "batch", "count", "median ms", "TFLOP/s");
  for (const Gemm& g : gemms) {
    const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
    const int64_t a_elems = a_rows * (g.lda ? g.lda : a_cols) * g.batch;
    const int64_t b_elems = g.k * g.n * g.batch;
    const int64_t d_elems = g.m * (g.ldd ? g.ldd : g.n) * g.batch;
    void *a, *b, *d;
    float* tmp;
    const int64_t tmp_n = std::max(a_elems, b_elems);
    if (cudaMalloc(&a, a_elems * 2) != cudaSuccess || cudaMalloc(&b, b_elems * 2) != cudaSuccess ||
        cudaMalloc(&d, d_elems * 4) != cudaSuccess || cudaMalloc(&tmp, tmp_n * 4) != cudaSuccess)
      return Fail("cudaMalloc failed for " + g.what);
    // Random (not zero) operands: zeros run faster than real data (METHOD.md).
    if (!p3d::InitNormal(tmp, tmp_n, 1.0f, 1, 0, nullptr).ok() ||
        !p3d::CastToBf16(tmp, static_cast<p3d::bf16*>(a), a_elems, nullptr).ok() ||
        !p3d::CastToBf16(tmp, static_cast<p3d::bf16*>(b), b_elems, nullptr).ok())
      return Fail("initialisation failed for " + g.what);
    cudaMemset(d, 0, d_elems * 4);
    p3d::MatmulParams p;
    p.m = g.m;
    p.n = g.n;
    p.k = g.k;
    p.a = static_cast<p3d::bf16*>(a);
    p.trans_a = g.ta;
    p.lda = g.lda;
    p.b = static_cast<p3d::bf16*>(b);
    p.trans_b = g.tb;
    p.d = d;
    p.d_type = g.out;
    p.beta = g.beta;
    p.ldd = g.ldd;
    p.batch = g.batch;
    p.stride_a = g.m * g.k;
    p.stride_b = g.k * g.n;
    p.stride_d = g.m * g.n;
    std::vector<float> ms;
    for (int i = 0; i < reps + 3; ++i) {
      cudaEventRecord(e0);
      p3d::Status s = mm.value()->Run(p, nullptr);
      cudaEventRecord(e1);
      if (!s.ok()) return Fail(g.what + ": " + s.ToString());
      cudaEventSynchronize(e1);
      float t = 0;
      cudaEventElapsedTime(&t, e0, e1);
      if (i >= 3) ms.push_back(t);
    }
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return Fail(g.what + ": " + cudaGetErrorString(err));
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2] * 1e-3;
    const double flops = 2.0 * g.m * g.n * g.k * g.batch;
    floor_s += med * g.per_step;
    flops_step += flops * g.per_step;
    std::cout << fmt::format("{:<12} {:>7} {:>7} {:>7} {:>6} {:>6} {:>10.3f} {:>9.1f}\n", g.what,
                             g.m, g.n, g.k, g.batch, g.per_step, med * 1e3, flops / med / 1e12);
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
    cudaFree(tmp);
  }
  std::cout << fmt::format(
      "GEMM floor of one micro-batch (fwd + bwd, no recompute, attention core as the full S x S "
      "square; p3d-run computes (n+1)/(2n) of it with n causal blocks): {:.2f} ms for {:.3e} FLOP "
      "= "
      "{:.1f} TFLOP/s\n",
      floor_s * 1e3, flops_step, flops_step / floor_s / 1e12);
  return 0;
}
