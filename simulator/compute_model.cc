#include "simulator/compute_model.h"

#include <algorithm>
#include <cmath>

namespace p3d {

double MemoryBoundSeconds(const GpuSpec& gpu, double bytes) {
  return bytes / (gpu.hbm_bytes_per_s * HbmEfficiency(gpu, bytes));
}

double GemmSeconds(const GpuSpec& gpu, double m, double n, double k, double batch, double elem,
                   double accumulate_bytes) {
  const double flops = 2.0 * m * n * k * batch;
  const double compute = flops / (gpu.peak_flops * GemmEfficiency(gpu, flops));
  const double c_bytes = accumulate_bytes > 0 ? 2.0 * accumulate_bytes : elem;
  const double bytes = batch * ((m * k + k * n) * elem + m * n * c_bytes);
  return std::max(compute, MemoryBoundSeconds(gpu, bytes));
}

double Fp8GemmSeconds(const GpuSpec& gpu, double m, double n, double k, double c_bytes) {
  const double flops = 2.0 * m * n * k;
  const double compute = flops / (gpu.fp8_peak_flops * Fp8GemmEfficiency(gpu, flops));
  return std::max(compute, MemoryBoundSeconds(gpu, m * k + k * n + m * n * c_bytes));
}

double Fp8Copies(const GpuSpec& gpu, Fp8Recipe recipe) {
  return gpu.fp8_tn_only || recipe == Fp8Recipe::kBlockwise || recipe == Fp8Recipe::kMxfp8 ? 2 : 1;
}

double OptimizerSeconds(const GpuSpec& gpu, const Precision& p, double params) {
  const double per_param =
      2.0 * (p.master_bytes + p.optimizer_bytes) + 2.0 * p.grad_bytes + p.param_bytes;
  const double eff = gpu.optimizer_efficiency > 0 ? gpu.optimizer_efficiency : gpu.hbm_efficiency;
  return per_param * params / (gpu.hbm_bytes_per_s * eff);
}

namespace {

// Shapes of one layer on one TP rank for one micro-batch (doubles: they only
// feed FLOP and byte counts).
struct Dims {
  double b, s, t;  // micro-batch, sequence, tokens T = B*S
  double t_sp;     // tokens the norms / residual / dropout see: T/TP with SP, else T
  double h, hd;    // hidden, head dim
  double heads;    // query heads on this rank NH/TP
  double q, kv;    // q width NH/TP*HD and k (= v) width on this rank (>= one KV head)
  double f;        // FFN width per rank F/TP (per expert)
  double a, g;     // activation and gradient-accumulation bytes per element
  double experts, topk;
  double blocks;   // causal query blocks of the attention core (TrainingSpec::AttentionBlocks)
  bool llama, dropout;
  bool qkv_bias, linear_bias;  // biases on q/k/v; biases on every linear (GPT-2)
  bool rotary;                 // rotary positions (Llama without ALiBi)
  bool learned_positions;      // a position table added after the gather (GPT-2 without ALiBi)
  bool embedding_norm;         // a norm after the embedding (BLOOM)
  Fp8Recipe fp8;               // TrainingSpec::fp8
};

Dims MakeDims(const ModelSpec& m, const TrainingSpec& t, const ComputeShape& sh) {
  Dims d;
  const double tp = sh.tp;
  d.b = static_cast<double>(sh.micro_batch);
  d.s = static_cast<double>(t.seq);
  d.t = d.b * d.s;
  d.t_sp = sh.sequence_parallel ? d.t / tp : d.t;
  d.h = static_cast<double>(m.hidden);
  d.hd = static_cast<double>(m.head_dim());
  d.heads = static_cast<double>(m.heads) / tp;
  d.q = d.heads * d.hd;
  d.kv = static_cast<double>(m.KvHeadsPerTpRank(sh.tp)) * d.hd;
  d.f = static_cast<double>(m.ffn) / tp;
  d.a = t.precision.activation_bytes;
  d.g = t.precision.grad_bytes;
  d.experts = static_cast<double>(m.experts);
  d.topk = static_cast<double>(m.experts_per_token);
  d.blocks = static_cast<double>(t.AttentionBlocks());
  d.llama = m.arch == Arch::kLlama;
  d.dropout = t.dropout;
  d.linear_bias = m.arch == Arch::kGpt2;
  d.qkv_bias = d.linear_bias || m.qkv_bias;
  d.rotary = d.llama && !m.alibi;
  d.learned_positions = m.learned_positions();
  d.embedding_norm = m.embedding_norm;
  d.fp8 = t.fp8;
  return d;
}

// A weight GEMM X[M,K] * W[K,N]: forward, and backward dX = dY W^T, dW += X^T dY.
struct WeightGemm {
  double m, n, k, count;  // count: identical GEMMs (MoE experts)
};

// A shape p3d-calibrate measured is timed from its measurement, any other
// from the efficiency table (hardware.h GemmShapeTime).
double Forward(const GpuSpec& gpu, const Dims& d, const WeightGemm& w) {
  GemmShapeTime t;
  if (MeasuredGemm(gpu, w.m, w.n, w.k, &t)) return w.count * t.fwd_s;
  return w.count * GemmSeconds(gpu, w.m, w.n, w.k, 1, d.a);
}
// Backward: the input-gradient (dX) and weight-gradient (dW) parts.
TpGemmTime Timed(const GpuSpec& gpu, const Dims& d, const WeightGemm& w) {
  GemmShapeTime t;
  if (MeasuredGemm(gpu, w.m, w.n, w.k, &t)) return {w.count * t.fwd_s, w.count * t.dx_s, w.count * t.dw_s};
  return {Forward(gpu, d, w), w.count * GemmSeconds(gpu, w.m, w.k, w.n, 1, d.a),
          w.count * GemmSeconds(gpu, w.k, w.n, w.m, 1, d.a, d.g)};
}
double Backward(const GpuSpec& gpu, const Dims& d, const WeightGemm& w) {
  const TpGemmTime t = Timed(gpu, d, w);
  return t.dgrad + t.wgrad;
}

// An FP8 weight GEMM's three passes (fp32 accumulation of dW, 2*g bytes of C).
TpGemmTime Fp8Timed(const GpuSpec& gpu, const Dims& d, const WeightGemm& w) {
  return {w.count * Fp8GemmSeconds(gpu, w.m, w.n, w.k, d.a),
          w.count * Fp8GemmSeconds(gpu, w.m, w.k, w.n, d.a),
          w.count * Fp8GemmSeconds(gpu, w.k, w.n, w.m, 2 * d.g)};
}

// The FP8 quantization of the layer's GEMM inputs (LayerKernels' comment):
// forward X [m, k] of each FP8 GEMM, backward dY [m, n]; one cast kernel per
// tensor (and one amax kernel before it under current scaling).
struct Fp8Casts {
  double amax = 0, copies = 0, scale = 0;  // passes, copies, scale bytes per element
  double fwd_s[4] = {}, bwd_s[4] = {};
  double x = 0, dy = 0;  // elements quantized forward and backward
  double fwd_bytes = 0, bwd_bytes = 0;
};
Fp8Casts Fp8CastTimes(const GpuSpec& gpu, const Dims& d, const WeightGemm g[4]) {
  Fp8Casts c;
  c.amax = Fp8AmaxPass(d.fp8) ? 1 : 0;
  c.copies = Fp8Copies(gpu, d.fp8);
  c.scale = Fp8ActivationScaleBytes(d.fp8);
  auto kernels = [&](double elems) {
    return c.amax * MemoryBoundSeconds(gpu, elems * d.a) +
           MemoryBoundSeconds(gpu, elems * (d.a + c.copies * (1 + c.scale)));
  };
  for (int i = 0; i < 4; ++i) {
    const double x = g[i].count * g[i].m * g[i].k, dy = g[i].count * g[i].m * g[i].n;
    c.fwd_s[i] = kernels(x);
    c.bwd_s[i] = kernels(dy);
    c.x += x;
    c.dy += dy;
  }
  const double per_elem = c.amax * d.a + d.a + c.copies * (1 + c.scale);
  c.fwd_bytes = c.x * per_elem;
  c.bwd_bytes = c.dy * per_elem;
  return c;
}

// Records the FP8 terms of one layer (LayerKernels).
void RecordFp8(Derivation* why, const Dims& d, const Fp8Casts& c, const TpGemmTime t[4]) {
  const double fwd = t[0].fwd + t[1].fwd + t[2].fwd + t[3].fwd;
  P3D_TERM(why, "layer.fp8.gemms.forward", "qkv + out + fc1 + fc2", fwd,
           "the four weight GEMMs in FP8 at fp8_peak*eff8(2MNK)", {"qkv", t[0].fwd},
           {"out", t[1].fwd}, {"fc1", t[2].fwd}, {"fc2", t[3].fwd});
  auto b = [&](int i) { return t[i].dgrad + t[i].wgrad; };
  P3D_TERM(why, "layer.fp8.gemms.backward", "qkv + out + fc1 + fc2", b(0) + b(1) + b(2) + b(3),
           "dgrad and wgrad (fp32 accumulate) of the four weight GEMMs in FP8", {"qkv", b(0)},
           {"out", b(1)}, {"fc1", b(2)}, {"fc2", b(3)});
  P3D_TERM(why, "layer.fp8.cast_bytes.forward", "X*(amax*e + e + copies*(1 + s))", c.fwd_bytes,
           "quantizing each FP8 GEMM's input: X = its elements summed", {"X", c.x}, {"amax", c.amax},
           {"e", d.a}, {"copies", c.copies}, {"s", c.scale});
  P3D_TERM(why, "layer.fp8.cast_bytes.backward", "dY*(amax*e + e + copies*(1 + s))", c.bwd_bytes,
           "quantizing each FP8 GEMM's output gradient", {"dY", c.dy}, {"amax", c.amax}, {"e", d.a},
           {"copies", c.copies}, {"s", c.scale});
  P3D_TERM(why, "layer.fp8.cast.forward", "qkv + out + fc1 + fc2",
           c.fwd_s[0] + c.fwd_s[1] + c.fwd_s[2] + c.fwd_s[3],
           "cast kernels at HBM*eff(bytes), one per input", {"qkv", c.fwd_s[0]}, {"out", c.fwd_s[1]},
           {"fc1", c.fwd_s[2]}, {"fc2", c.fwd_s[3]});
  P3D_TERM(why, "layer.fp8.cast.backward", "qkv + out + fc1 + fc2",
           c.bwd_s[0] + c.bwd_s[1] + c.bwd_s[2] + c.bwd_s[3],
           "cast kernels at HBM*eff(bytes), one per output gradient", {"qkv", c.bwd_s[0]},
           {"out", c.bwd_s[1]}, {"fc1", c.bwd_s[2]}, {"fc2", c.bwd_s[3]});
}

// The layer's weight GEMMs on one TP rank: qkv and fc/gate+up column-parallel
// (N split), out-proj and fc2/down row-parallel (K split); the MoE router is
// replicated.
int WeightGemms(const Dims& d, WeightGemm out[5]) {
  int n = 0;
  out[n++] = {d.t, d.q + 2 * d.kv, d.h, 1};
  out[n++] = {d.t, d.h, d.q, 1};
  const double tokens = d.experts > 1 ? d.t * d.topk / d.experts : d.t;
  out[n++] = {tokens, (d.llama ? 2 : 1) * d.f, d.h, d.experts};
  out[n++] = {tokens, d.h, d.f, d.experts};
  if (d.experts > 1) out[n++] = {d.t, d.experts, d.h, 1};
  return n;
}

// Attention core: scores = Q K^T (S x S x HD) and out = P V (S x HD x S) per
// head, B*NH/TP heads per batched call, cut into n causal query blocks as the
// executor does (executor/model.h): block i of n multiplies its S/n queries by
// the (i+1)*S/n keys of blocks <= i, so the blocks do (n+1)/(2n) of the square.
double CoreForwardGemms(const GpuSpec& gpu, const Dims& d) {
  const double batch = d.b * d.heads, sb = d.s / d.blocks;
  double seconds = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) {
    const double keys = (i + 1) * sb;
    seconds += GemmSeconds(gpu, sb, keys, d.hd, batch, d.a) + GemmSeconds(gpu, sb, d.hd, keys, batch, d.a);
  }
  return seconds;
}
// dP = dO V^T (S x S x HD); dV = P^T dO, dQ = dS K, dK = dS^T Q (S x HD x S each), per block.
double CoreBackwardGemms(const GpuSpec& gpu, const Dims& d) {
  const double batch = d.b * d.heads, sb = d.s / d.blocks;
  double seconds = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) {
    const double keys = (i + 1) * sb;
    seconds += GemmSeconds(gpu, sb, keys, d.hd, batch, d.a) + 3 * GemmSeconds(gpu, sb, d.hd, keys, batch, d.a);
  }
  return seconds;
}

// The fused core (cuDNN flash attention, executor/fused_attention.h): one
// kernel each way, compute-bound, skipping the masked upper triangle: forward
// 2 GEMMs over the causal half, 4*B*NH/TP*S^2*HD/2 FLOPs; backward 5 GEMMs,
// 2.5x that. Uncalibrated efficiencies (of dense bf16 peak): p3d-attention-bench
// at B4 NH16 S2048 HD128 on an H100 SXM, cuDNN 9.14: forward 452, backward 333
// TFLOP/s of 989 (bench/results/fused-attention.md).
constexpr double kFusedForwardEfficiency = 0.46, kFusedBackwardEfficiency = 0.34;
double FusedForwardFlops(const Dims& d) { return 2 * d.b * d.heads * d.s * d.s * d.hd; }

// Forward FLOPs of the blocked core (AttentionEfficiencyPoint::flops): two
// GEMM families of 2 * S_q * keys * HD per head over the causal blocks.
double CoreForwardFlops(const Dims& d) { return 4 * d.b * d.heads * d.s * d.s * d.hd * (d.blocks + 1) / (2 * d.blocks); }

// Elements of the score matrix the blocked attention materialises: (n+1)/(2n) of B*NH/TP*S*S.
double ScoreElements(const Dims& d) { return d.b * d.heads * d.s * d.s * (d.blocks + 1) / (2 * d.blocks); }

// Memory-bound bytes of the attention core's elementwise part, forward:
// scale + causal mask + softmax reads the scores and writes the
// probabilities; attention dropout reads and writes them and writes a 1-byte
// mask; the context [B*NH/TP, S, HD] is permuted back to [T, NH/TP*HD] (a copy:
// read + write T*q).
double CoreForwardBytes(const Dims& d) {
  const double scores = ScoreElements(d);
  return scores * 2 * d.a + (d.dropout ? scores * (2 * d.a + 1) : 0) + 2 * d.t * d.q * d.a;
}
// Backward: softmax backward reads P and dP and writes dS; dropout backward
// reads dP and the mask and writes dP; the context gradient is permuted.
double CoreBackwardBytes(const Dims& d) {
  const double scores = ScoreElements(d);
  return scores * 3 * d.a + (d.dropout ? scores * (2 * d.a + 1) : 0) + 2 * d.t * d.q * d.a;
}

// The rest of the layer's memory-bound ops, forward, bytes (each op one kernel,
// timed by MemoryBoundSeconds at its own size):
//   2 norms             read x, write y                      2 * 2*T_sp*H*a
//   rotary (Llama)      read + write q and k                 2*T*(q + kv)*a
//                       (inside a calibrated attention core: not counted here)
//   2 residual adds     read 2, write 1                      2 * 3*T_sp*H*a
//   2 hidden dropouts   (dropout on) + 1-byte mask write     2 * T_sp*H*1
//   activation          GELU: read, write T*F; SwiGLU: read gate and up, write one
//                       (per routed token for MoE)
//   MoE permute/unpermute  read + write the routed tokens twice   4*T*k*H*a
//   q/k/v bias add      a separate kernel after the GEMM (the other biases
//                       fuse into bias-GELU and bias-dropout-add)   2*T*(q + 2kv)*a
double LayerForwardSeconds(const GpuSpec& gpu, const Dims& d, bool core_calibrated) {
  auto k = [&](double bytes) { return MemoryBoundSeconds(gpu, bytes); };
  double s = 2 * k(2 * d.t_sp * d.h * d.a) + 2 * k(3 * d.t_sp * d.h * d.a);
  if (d.qkv_bias) s += k(2 * d.t * (d.q + 2 * d.kv) * d.a);
  if (d.rotary && !core_calibrated) s += k(2 * d.t * (d.q + d.kv) * d.a);
  if (d.dropout) s += 2 * k(d.t_sp * d.h);
  const double routed = d.experts > 1 ? d.t * d.topk : d.t;
  s += k(routed * d.f * (d.llama ? 3 : 2) * d.a);
  if (d.experts > 1) s += 2 * k(2 * d.t * d.topk * d.h * d.a);
  return s;
}
// Backward: norm backward reads x and dy twice (one pass for the weight
// gradient, one for dx) and writes dx (5 tensors); residual branches add
// gradients (read 2, write 1); rotary as forward; dropout reads dy and the
// mask and writes dx; GELU backward reads x and dy, writes dx (3); SwiGLU
// backward reads gate, up, dy and writes dgate, dup (5); MoE permutes the
// gradients back; each bias gradient reads its GEMM's output gradient once
// (q/k/v: T*(q+2kv); GPT-2 also fc: T*F/TP, out-proj and fc2: T_sp*H).
double LayerBackwardSeconds(const GpuSpec& gpu, const Dims& d, bool core_calibrated) {
  auto k = [&](double bytes) { return MemoryBoundSeconds(gpu, bytes); };
  double s = 2 * k(5 * d.t_sp * d.h * d.a) + 2 * k(3 * d.t_sp * d.h * d.a);
  if (d.qkv_bias) s += k(d.t * (d.q + 2 * d.kv) * d.a);
  if (d.linear_bias) s += k(d.t * d.f * d.topk * d.a) + 2 * k(d.t_sp * d.h * d.a);
  if (d.rotary && !core_calibrated) s += k(2 * d.t * (d.q + d.kv) * d.a);
  if (d.dropout) s += 2 * k(d.t_sp * d.h * (2 * d.a + 1));
  const double routed = d.experts > 1 ? d.t * d.topk : d.t;
  s += k(routed * d.f * (d.llama ? 5 : 3) * d.a);
  if (d.experts > 1) s += 2 * k(2 * d.t * d.topk * d.h * d.a);
  return s;
}

}  // namespace

LayerKernelTimes LayerKernels(const ModelSpec& model, const TrainingSpec& training,
                              const GpuSpec& gpu, const ComputeShape& shape, Derivation* why) {
  const Dims d = MakeDims(model, training, shape);
  WeightGemm gemms[5];
  const int n = WeightGemms(d, gemms);
  LayerKernelTimes out;
  TpGemmTime timed[5];
  const bool fp8 = d.fp8 != Fp8Recipe::kOff;
  for (int i = 0; i < n; ++i) {
    // The first four are the linear layers; the MoE router stays bf16.
    timed[i] = fp8 && i < 4 ? Fp8Timed(gpu, d, gemms[i]) : Timed(gpu, d, gemms[i]);
    out.forward.gemm_s += timed[i].fwd;
    out.backward.gemm_s += timed[i].dgrad + timed[i].wgrad;
  }
  if (fp8) {
    const Fp8Casts casts = Fp8CastTimes(gpu, d, gemms);
    for (int i = 0; i < 4; ++i) {
      out.forward.memory_s += casts.fwd_s[i];
      out.backward.memory_s += casts.bwd_s[i];
    }
    if (why != nullptr) RecordFp8(why, d, casts, timed);
  }
  // WeightGemms order: q/k/v, out-proj, fc1 (gate+up), fc2 (down).
  out.column[0] = timed[0], out.column[1] = timed[2];
  out.row[0] = timed[1], out.row[1] = timed[3];
  // The attention core: measured (its GEMMs, softmax and head layouts as one
  // unit, AttentionEfficiencyPoint) or GEMM table + score-matrix traffic.
  KernelTime core_fwd, core_bwd, core_probs;
  AttentionEfficiencyPoint cal;
  const double core_flops = CoreForwardFlops(d);
  const bool fused = shape.attention == AttentionImpl::kFused;
  // Calibrated attention points time the unfused core (p3d-calibrate's probe).
  const bool calibrated = !fused && AttentionEfficiency(gpu, d.hd, d.s, core_flops, &cal);
  if (fused) {
    // Rotary runs as its own kernel (counted by LayerForwardSeconds); the
    // selective recompute of the fused core recomputes nothing (docs/executor.md).
    core_fwd.gemm_s = FusedForwardFlops(d) / (gpu.peak_flops * kFusedForwardEfficiency);
    core_bwd.gemm_s = 2.5 * FusedForwardFlops(d) / (gpu.peak_flops * kFusedBackwardEfficiency);
  } else if (calibrated) {
    core_fwd.gemm_s = core_flops / (gpu.peak_flops * cal.forward);
    core_probs.gemm_s = core_flops / 2 / (gpu.peak_flops * cal.probs);
    core_bwd.gemm_s = 2 * core_flops / (gpu.peak_flops * cal.backward);
  } else {
    core_fwd = {CoreForwardGemms(gpu, d), MemoryBoundSeconds(gpu, CoreForwardBytes(d))};
    core_probs = core_fwd;
    core_bwd = {CoreBackwardGemms(gpu, d), MemoryBoundSeconds(gpu, CoreBackwardBytes(d))};
  }
  out.forward += core_fwd;
  out.backward += core_bwd;
  out.forward.memory_s += LayerForwardSeconds(gpu, d, calibrated);
  out.backward.memory_s += LayerBackwardSeconds(gpu, d, calibrated);
  switch (shape.recompute) {
    case Recompute::kNone:
      break;
    case Recompute::kSelective:
      switch (training.framework.selective) {
        case SelectiveRecompute::kScores:
          if (!fused) out.recompute = core_probs;
          break;
        case SelectiveRecompute::kCoreAttention:
          out.recompute = core_fwd;
          break;
        case SelectiveRecompute::kOpLevel:
          // torchtitan's op-level policy counts matmuls in forward order (Llama:
          // wq, wk, wv, wo, w1, w3, w2; GPT: qkv, out, fc1, fc2) and recomputes
          // every second one (wk, wo, w3; out, fc2) with every norm, rotary,
          // activation and residual op; attention's output is saved.
          out.recompute.memory_s = LayerForwardSeconds(gpu, d, calibrated);
          out.recompute.gemm_s = d.llama ? timed[0].fwd * d.kv / (d.q + 2 * d.kv) + timed[1].fwd + timed[2].fwd / 2
                                         : timed[1].fwd + timed[3].fwd;
          break;
      }
      break;
    case Recompute::kFull:
      out.recompute = out.forward;
      break;
  }
  return out;
}

// Embedding (stage 0), vocab-parallel: each TP rank gathers the rows it owns
// for all T tokens (read T*H, write T*H; the partial sums are then reduced over
// TP, see time_model); GPT adds learned positions (read 2, write 1) and, with
// dropout, embedding dropout. Backward scatter-adds T rows of dY into the
// accumulation buffer (read dY, read + write the grad rows).
// Head (last stage): final norm; logits GEMM T x V/TP x H; vocab-parallel
// cross-entropy forward casts the logits to fp32 and makes max, exp-sum and
// normalise passes: T*V/TP*(a + 4 + 4 + 4 + 4) bytes; backward reads the fp32
// softmax and writes dlogits: T*V/TP*(4 + a); the logits GEMM's dX and dW.
EdgeKernelTimes EdgeKernels(const ModelSpec& model, const TrainingSpec& training,
                            const GpuSpec& gpu, const ComputeShape& shape) {
  const Dims d = MakeDims(model, training, shape);
  const double v = static_cast<double>(model.vocab) / shape.tp;
  EdgeKernelTimes e;
  // One kernel per op: gather (+ positions) (+ embedding norm) (+ dropout);
  // scatter-add (+ positions grad) (+ norm backward, 5 tensors as a layer's).
  // ALiBi's biases are added inside the attention core: no op of their own.
  auto k = [&](double bytes) { return MemoryBoundSeconds(gpu, bytes); };
  e.embedding_forward.memory_s = k(2 * d.t * d.h * d.a);
  e.embedding_backward.memory_s = k(d.t * d.h * (d.a + 2 * d.g));
  if (d.learned_positions) {
    e.embedding_forward.memory_s += k(3 * d.t * d.h * d.a);
    e.embedding_backward.memory_s += k(d.t * d.h * (d.a + 2 * d.g));
  }
  if (d.embedding_norm) {
    e.embedding_forward.memory_s += k(2 * d.t_sp * d.h * d.a);
    e.embedding_backward.memory_s += k(5 * d.t_sp * d.h * d.a);
  }
  if (d.dropout) {
    e.embedding_forward.memory_s += k(d.t_sp * d.h * (2 * d.a + 1));
    e.embedding_backward.memory_s += k(d.t_sp * d.h * (2 * d.a + 1));
  }

  // The logits GEMMs run per loss chunk of logits_chunk_tokens (0: all T).
  const double chunk = training.logits_chunk_tokens > 0
                           ? std::min(d.t, static_cast<double>(training.logits_chunk_tokens))
                           : d.t;
  const double full = std::floor(d.t / chunk), rest = d.t - full * chunk;
  for (const WeightGemm& logits : {WeightGemm{chunk, v, d.h, full}, WeightGemm{rest, v, d.h, 1}}) {
    if (logits.m <= 0 || logits.count <= 0) continue;
    e.head_forward.gemm_s += Forward(gpu, d, logits);
    e.head_backward.gemm_s += Backward(gpu, d, logits);
  }
  // Final norm, then the cross-entropy passes over the logits; a fused
  // cross-entropy (Framework::fused_cross_entropy) reads the bf16 logits once
  // forward and reads them and writes their gradient backward.
  const bool fused_ce = training.framework.fused_cross_entropy;
  e.head_forward.memory_s = k(2 * d.t_sp * d.h * d.a) + k(d.t * v * (fused_ce ? d.a : d.a + 16));
  e.head_backward.memory_s = k(3 * d.t_sp * d.h * d.a) + k(d.t * v * (fused_ce ? 2 * d.a : 4 + d.a));
  return e;
}

}  // namespace p3d
