// p3d-attention-bench: the executor's two causal attention cores on one shape,
// random bf16 data: FusedAttention (cuDNN fused flash attention) and the
// unfused AttentionCore (batched GEMMs over a materialised score matrix).
// Verifies first (fused vs unfused output and input gradient on the same
// data), then times forward, backward and forward+backward with CUDA events
// (median of --reps after --warmup). TFLOP/s counts the causal half of the
// attention FLOPs (forward 2 GEMMs, backward 5: 4 B NH S^2 HD / 2 and 2.5x
// that), as FlashAttention's benchmarks do.
//
//   p3d-attention-bench --batch 4 --heads 16 --kv-heads 16 --seq 2048 --head-dim 128
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <random>
#include <vector>

#include "executor/attention_core.h"
#include "executor/fused_attention.h"
#include "executor/matmul.h"
#include "common/plan.h"

namespace {

using p3d::bf16;

int Fail(const std::string& msg) {
  std::cerr << "p3d-attention-bench: " << msg << "\n";
  return 2;
}

#define BENCH_CHECK(expr)                                    \
  do {                                                       \
    ::p3d::Status st_ = (expr);                              \
    if (!st_.ok()) return Fail(#expr ": " + st_.ToString()); \
  } while (0)
#define BENCH_CUDA(expr)                                                                  \
  do {                                                                                    \
    cudaError_t e_ = (expr);                                                              \
    if (e_ != cudaSuccess) return Fail(#expr ": " + std::string(cudaGetErrorString(e_))); \
  } while (0)

std::vector<bf16> RandomBf16(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-1.5f, 1.5f);
  std::vector<bf16> v(n);
  for (auto& x : v) x = __float2bfloat16(d(gen));
  return v;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds of fn over reps runs (each bracketed by events).
double TimeMs(const std::function<p3d::Status()>& fn, int warmup, int reps, p3d::Status* err) {
  for (int i = 0; i < warmup && err->ok(); ++i) *err = fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> ms;
  for (int i = 0; i < reps && err->ok(); ++i) {
    cudaEventRecord(a);
    *err = fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms.empty() ? 0.0 : Median(ms);
}

double RelDiff(const std::vector<bf16>& a, const std::vector<bf16>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = __bfloat162float(a[i]), r = __bfloat162float(ref[i]);
    if (!std::isfinite(x)) return INFINITY;
    num += (x - r) * (x - r);
    den += r * r;
  }
  return std::sqrt(num / den);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t B = 4, NH = 16, KV = 16, S = 2048, HD = 128;
  int reps = 20, warmup = 5;
  bool skip_unfused = false;
  CLI::App app{"p3d-attention-bench: fused (cuDNN) vs unfused causal attention, fwd and bwd"};
  app.add_option("--batch", B, "B");
  app.add_option("--heads", NH, "NH");
  app.add_option("--kv-heads", KV, "KV");
  app.add_option("--seq", S, "S");
  app.add_option("--head-dim", HD, "HD");
  app.add_option("--reps", reps, "timed repetitions (median reported)");
  app.add_option("--warmup", warmup, "untimed repetitions first");
  app.add_flag("--skip-unfused", skip_unfused, "time the fused core only (long sequences)");
  CLI11_PARSE(app, argc, argv);
  const int64_t T = B * S, W = (NH + 2 * KV) * HD, E = NH * HD;
  const p3d::AttentionCoreShape shape{B, S, NH, KV, HD, p3d::DefaultAttentionBlocks(S)};
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreate(&stream));

  auto fused = p3d::FusedAttention::Create(shape, stream);
  if (!fused.ok()) return Fail(fused.status().ToString());
  const p3d::FusedAttention& fa = **fused;
  std::cout << "fused: " << fa.Describe() << "\n";

  bf16 *qkv, *d_out, *out, *dqkv;
  float* stats;
  void* ws;
  BENCH_CUDA(cudaMalloc(&qkv, T * W * 2));
  BENCH_CUDA(cudaMalloc(&d_out, T * E * 2));
  BENCH_CUDA(cudaMalloc(&out, T * E * 2));
  BENCH_CUDA(cudaMalloc(&dqkv, T * W * 2));
  BENCH_CUDA(cudaMalloc(&stats, B * NH * S * 4));
  BENCH_CUDA(cudaMalloc(&ws, std::max<int64_t>(fa.workspace_bytes(), 256)));
  const std::vector<bf16> h_qkv = RandomBf16(T * W, 1), h_dout = RandomBf16(T * E, 2);
  BENCH_CUDA(cudaMemcpy(qkv, h_qkv.data(), T * W * 2, cudaMemcpyHostToDevice));
  BENCH_CUDA(cudaMemcpy(d_out, h_dout.data(), T * E * 2, cudaMemcpyHostToDevice));

  auto fwd = [&] { return fa.Forward(qkv, out, stats, ws); };
  auto bwd = [&] { return fa.Backward(qkv, out, d_out, stats, dqkv, ws); };
  BENCH_CHECK(fwd());
  BENCH_CHECK(bwd());
  BENCH_CUDA(cudaStreamSynchronize(stream));

  const double fwd_flop = 4.0 * B * NH * S * S * HD / 2, bwd_flop = 2.5 * fwd_flop;
  struct Row {
    std::string impl;
    double f, b, fb;
  };
  std::vector<Row> rows;
  p3d::Status err;
  Row fr{"fused", TimeMs(fwd, warmup, reps, &err), TimeMs(bwd, warmup, reps, &err), 0};
  fr.fb = TimeMs(
      [&] {
        P3D_RETURN_IF_ERROR(fwd());
        return bwd();
      },
      warmup, reps, &err);
  BENCH_CHECK(err);
  rows.push_back(fr);

  if (!skip_unfused) {
    std::vector<bf16> f_out(T * E), f_dqkv(T * W);
    BENCH_CHECK(fwd());
    BENCH_CHECK(bwd());
    BENCH_CUDA(cudaMemcpy(f_out.data(), out, T * E * 2, cudaMemcpyDeviceToHost));
    BENCH_CUDA(cudaMemcpy(f_dqkv.data(), dqkv, T * W * 2, cudaMemcpyDeviceToHost));
    void* mm_ws;
    BENCH_CUDA(cudaMalloc(&mm_ws, p3d::Matmul::kWorkspaceBytes));
    auto mm = p3d::Matmul::Create(mm_ws, p3d::Matmul::kWorkspaceBytes);
    if (!mm.ok()) return Fail(mm.status().ToString());
    bf16 *q, *k, *v, *probs, *o_heads, *d_o, *dprobs, *dqkv_heads;
    const int64_t scores = B * NH * S * S;
    BENCH_CUDA(cudaMalloc(&q, T * E * 2));
    BENCH_CUDA(cudaMalloc(&k, T * KV * HD * 2));
    BENCH_CUDA(cudaMalloc(&v, T * KV * HD * 2));
    BENCH_CUDA(cudaMalloc(&probs, scores * 2));
    BENCH_CUDA(cudaMalloc(&dprobs, scores * 2));
    BENCH_CUDA(cudaMalloc(&o_heads, T * E * 2));
    BENCH_CUDA(cudaMalloc(&d_o, T * E * 2));
    BENCH_CUDA(cudaMalloc(&dqkv_heads, T * W * 2));
    const p3d::AttentionCore core(mm->get(), shape, nullptr, nullptr, stream);
    const p3d::AttentionCoreScratch scratch{d_o, dprobs, dqkv_heads};
    auto ufwd = [&] { return core.Forward(qkv, q, k, v, probs, o_heads, out); };
    auto ubwd = [&] { return core.Backward(d_out, q, k, v, probs, scratch, dqkv); };
    BENCH_CHECK(ufwd());
    BENCH_CHECK(ubwd());
    std::vector<bf16> u_out(T * E), u_dqkv(T * W);
    BENCH_CUDA(cudaMemcpy(u_out.data(), out, T * E * 2, cudaMemcpyDeviceToHost));
    BENCH_CUDA(cudaMemcpy(u_dqkv.data(), dqkv, T * W * 2, cudaMemcpyDeviceToHost));
    std::cout << fmt::format("verify: fused vs unfused rel diff out {:.2e}, dqkv {:.2e}\n",
                             RelDiff(f_out, u_out), RelDiff(f_dqkv, u_dqkv));
    Row ur{"unfused", TimeMs(ufwd, warmup, reps, &err), TimeMs(ubwd, warmup, reps, &err), 0};
    ur.fb = TimeMs(
        [&] {
          P3D_RETURN_IF_ERROR(ufwd());
          return ubwd();
        },
        warmup, reps, &err);
    BENCH_CHECK(err);
    rows.push_back(ur);
  }

  std::cout << fmt::format("shape B{} NH{} KV{} S{} HD{} causal, bf16\n", B, NH, KV, S, HD);
  std::cout << fmt::format("{:<8} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}\n", "impl", "fwd ms",
                           "bwd ms", "fwd+bwd ms", "fwd TF/s", "bwd TF/s", "f+b TF/s");
  for (const Row& r : rows) {
    std::cout << fmt::format("{:<8} {:>9.3f} {:>9.3f} {:>11.3f} {:>9.0f} {:>9.0f} {:>9.0f}\n",
                             r.impl, r.f, r.b, r.fb, fwd_flop / r.f * 1e-9, bwd_flop / r.b * 1e-9,
                             (fwd_flop + bwd_flop) / r.fb * 1e-9);
  }
  return 0;
}
