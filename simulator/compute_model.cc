#include "simulator/compute_model.h"

#include "simulator/attention_kernels.h"

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

// Shapes of one layer of one kind on one TP rank for one micro-batch
// (doubles: they only feed FLOP and byte counts).
struct Dims {
  double b, s, t;  // micro-batch, sequence, tokens on this rank T = B*S/CP
  double cp;       // context-parallel ranks sharing each sequence
  double t_sp;     // tokens the norms / residual / dropout see: T/TP with SP, else T
  double h;        // hidden
  double hd_qk, hd_v;  // per-head widths of q.k and of v (HD; MLA: nope + rope, v_head_dim)
  double heads;    // query heads on this rank NH/TP
  double q, kv;    // q width NH/TP*HD and k (= v) width on this rank (>= one KV head)
  double o;        // the output projection's input width NH/TP*HD_v
  double f;        // FFN width per rank: F/TP (dense layer) or expert_ffn/TP (MoE layer)
  double a, g;     // activation and gradient-accumulation bytes per element
  double experts, topk, shared;  // MoE layer: routed experts, top-k, shared experts (dense: 1, 1, 0)
  double ep;                     // expert parallelism: E/EP experts on this rank
  double tp_over_etp;            // TP/ETP: the experts' tokens gathered over the TP ranks outside the expert TP
  double fs;                     // a shared expert's width per rank, expert_ffn/TP (shared experts use TP)
  double keys;     // keys one query attends to: S, or min(W, S) in a windowed layer
  double blocks;   // causal query blocks of the attention core (TrainingSpec::AttentionBlocks)
  bool moe, llama, dropout;
  bool qkv_bias, linear_bias;  // biases on q/k/v (a kernel of their own); biases on every linear (GPT-2)
  bool gelu_epilogue;          // GELU and its gradient inside the fc GEMMs (Framework::gelu_in_gemm_epilogue)
  bool bias_grad_epilogue;     // bias gradients inside the weight-gradient GEMMs
  bool qk_norm;                // Qwen3: norms on q and k
  bool rotary;                 // rotary positions (Llama without ALiBi)
  bool learned_positions;      // a position table added after the gather (GPT-2 without ALiBi)
  bool embedding_norm;         // a norm after the embedding (BLOOM)
  Fp8Recipe fp8;               // TrainingSpec::fp8
  // Elementwise bytes in units of a per element (Framework::elementwise, an
  // eager framework's bytes / a; else the fused kernels of the table below):
  double rotary_f, rotary_b;  // rotary, per element of q and k: 2, 2
  double act_f, act_b;        // MLP activation, per element of its output: GELU 2, 3; SwiGLU 3, 5
  double split_f, split_b;    // the q/k/v split, per element of q, k and v: 0, 0
  // MLA (ModelSpec::mla): q_lora (0: q from H), kv_lora, rope widths.
  bool mla;
  double q_lora, kv_lora, rope;
};

Dims MakeDims(const ModelSpec& m, const LayerKind& kind, const TrainingSpec& t, const ComputeShape& sh) {
  Dims d;
  const double tp = sh.tp;
  d.b = static_cast<double>(sh.micro_batch);
  d.s = static_cast<double>(t.seq);
  d.cp = sh.cp;
  d.t = d.b * d.s / d.cp;
  d.t_sp = sh.sequence_parallel ? d.t / tp : d.t;
  d.h = static_cast<double>(m.hidden);
  d.hd_qk = static_cast<double>(m.qk_head_dim());
  d.hd_v = static_cast<double>(m.v_dim_per_head());
  d.heads = static_cast<double>(m.heads) / tp;
  d.q = d.heads * d.hd_qk;
  d.o = d.heads * d.hd_v;
  d.kv = m.mla() ? d.q : static_cast<double>(m.KvHeadsPerTpRank(sh.tp)) * d.hd_qk;
  d.moe = kind.moe;
  const double etp = sh.etp > 0 ? sh.etp : tp;
  d.f = kind.moe ? static_cast<double>(m.expert_ffn()) / etp : static_cast<double>(m.ffn) / tp;
  d.tp_over_etp = kind.moe ? tp / etp : 1;
  d.fs = kind.moe ? static_cast<double>(m.expert_ffn()) / tp : 0;
  d.a = t.precision.activation_bytes;
  d.g = t.precision.grad_bytes;
  d.experts = kind.moe ? static_cast<double>(m.experts) : 1;
  d.topk = kind.moe ? static_cast<double>(m.experts_per_token) : 1;
  d.shared = kind.moe ? static_cast<double>(m.shared_experts) : 0;
  d.ep = kind.moe ? sh.ep : 1;
  d.keys = static_cast<double>(m.AttendedKeys(kind, t.seq));
  d.blocks = static_cast<double>(t.AttentionBlocks());
  d.llama = m.arch == Arch::kLlama;
  d.dropout = t.dropout;
  d.linear_bias = m.arch == Arch::kGpt2;
  d.qkv_bias = d.linear_bias || m.qkv_bias || m.attention_bias;
  d.gelu_epilogue = !d.llama && t.framework.gelu_in_gemm_epilogue;
  d.bias_grad_epilogue = t.framework.bias_grad_in_gemm_epilogue;
  d.qk_norm = m.qk_norm;
  d.rotary = d.llama && !m.alibi;
  d.learned_positions = m.learned_positions();
  d.embedding_norm = m.embedding_norm;
  d.fp8 = t.fp8;
  const std::optional<ElementwiseBytes>& eager = t.framework.elementwise;
  d.rotary_f = eager ? eager->rotary.forward / d.a : 2;
  d.rotary_b = eager ? eager->rotary.backward / d.a : 2;
  d.act_f = !d.llama ? 2 : eager ? eager->swiglu.forward / d.a : 3;
  d.act_b = !d.llama ? 3 : eager ? eager->swiglu.backward / d.a : 5;
  d.split_f = eager ? eager->qkv_split.forward / d.a : 0;
  d.split_b = eager ? eager->qkv_split.backward / d.a : 0;
  d.mla = m.mla();
  d.q_lora = static_cast<double>(m.q_lora_rank);
  d.kv_lora = static_cast<double>(m.kv_lora_rank);
  d.rope = static_cast<double>(m.qk_rope_head_dim);
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

// The layer's weight GEMMs on one TP rank, by role: q/k/v and fc (gate+up)
// column-parallel (N split), out-proj and fc2 (down) row-parallel (K split).
//   MLA: the q and kv down projections are replicated over TP (Megatron-Core's
//   duplicated linears) and listed as `other`; the up projections are the
//   column-parallel attention GEMMs.
//   MoE layer: the routed experts run as grouped GEMMs of T*k*EP/E tokens
//   each (balanced routing: every expert receives its mean share of the EP
//   group's tokens, no capacity factor), E/EP of them; shared experts as one GEMM of s*F columns over all T
//   tokens; the router (H x E, replicated) is `other`.
struct LayerGemms {
  WeightGemm list[10];
  int n = 0;
  int qkv_first = 0, qkv_end = 0;    // column-parallel attention GEMMs [first, end)
  int out_proj = 0;                  // row-parallel attention GEMM
  int fc1_first = 0, fc1_end = 0;    // column-parallel FFN GEMMs
  int fc2_first = 0, fc2_end = 0;    // row-parallel FFN GEMMs
  void Add(const WeightGemm& g) { list[n++] = g; }
};

LayerGemms WeightGemms(const Dims& d) {
  LayerGemms g;
  if (d.mla) {
    if (d.q_lora > 0) g.Add({d.t, d.q_lora, d.h, 1});       // q down (replicated)
    g.Add({d.t, d.kv_lora + d.rope, d.h, 1});               // kv down (replicated)
    g.qkv_first = g.n;
    g.Add({d.t, d.q, d.q_lora > 0 ? d.q_lora : d.h, 1});     // q up
    g.Add({d.t, d.heads * (d.hd_qk - d.rope) + d.o, d.kv_lora, 1});  // kv up: k_nope and v
    g.qkv_end = g.n;
  } else {
    g.qkv_first = g.n;
    g.Add({d.t, d.q + 2 * d.kv, d.h, 1});
    g.qkv_end = g.n;
  }
  g.out_proj = g.n;
  g.Add({d.t, d.h, d.o, 1});
  const double fc1 = (d.llama ? 2 : 1) * d.f;
  // T for a dense layer; the experts' tokens per local expert, T*k*EP*ETP/(TP*E).
  const double tokens = d.t * d.topk * d.ep / (d.tp_over_etp * d.experts);
  const double local = d.experts / d.ep;
  g.fc1_first = g.n;
  g.Add({tokens, fc1, d.h, local});
  if (d.shared > 0) g.Add({d.t, (d.llama ? 2 : 1) * d.fs * d.shared, d.h, 1});
  g.fc1_end = g.fc2_first = g.n;
  g.Add({tokens, d.h, d.f, local});
  if (d.shared > 0) g.Add({d.t, d.h, d.fs * d.shared, 1});
  g.fc2_end = g.n;
  if (d.moe) g.Add({d.t, d.experts, d.h, 1});  // router
  return g;
}

// The FP8 groups of a layer's GEMMs (docs/time-model.md "FP8"): 0 the
// attention input projections (q/k/v; MLA's down and up projections), 1
// out-proj, 2 fc1 (gate+up: routed experts and shared experts), 3 fc2 (down);
// -1 the MoE router, which stays bf16.
int Fp8Group(const LayerGemms& g, int i) {
  if (i < g.out_proj) return 0;
  if (i == g.out_proj) return 1;
  if (i < g.fc1_end) return 2;
  if (i < g.fc2_end) return 3;
  return -1;
}

// An FP8 weight GEMM's three passes (fp32 accumulation of dW, 2*g bytes of C).
TpGemmTime Fp8Timed(const GpuSpec& gpu, const Dims& d, const WeightGemm& w) {
  return {w.count * Fp8GemmSeconds(gpu, w.m, w.n, w.k, d.a),
          w.count * Fp8GemmSeconds(gpu, w.m, w.k, w.n, d.a),
          w.count * Fp8GemmSeconds(gpu, w.k, w.n, w.m, 2 * d.g)};
}

// The FP8 quantization of the layer's GEMM inputs (LayerKernels' comment):
// forward X [m, k] of each FP8 GEMM, backward dY [m, n]; one cast kernel per
// tensor (and one amax kernel before it under current scaling), summed per
// group (Fp8Group).
struct Fp8Casts {
  double amax = 0, copies = 0, scale = 0;  // passes, copies, scale bytes per element
  double fwd_s[4] = {}, bwd_s[4] = {};
  double x = 0, dy = 0;  // elements quantized forward and backward
  double fwd_bytes = 0, bwd_bytes = 0;
};
Fp8Casts Fp8CastTimes(const GpuSpec& gpu, const Dims& d, const LayerGemms& g) {
  Fp8Casts c;
  c.amax = Fp8AmaxPass(d.fp8) ? 1 : 0;
  c.copies = Fp8Copies(gpu, d.fp8);
  c.scale = Fp8ActivationScaleBytes(d.fp8);
  auto kernels = [&](double elems) {
    return c.amax * MemoryBoundSeconds(gpu, elems * d.a) +
           MemoryBoundSeconds(gpu, elems * (d.a + c.copies * (1 + c.scale)));
  };
  for (int i = 0; i < g.n; ++i) {
    const int group = Fp8Group(g, i);
    if (group < 0) continue;
    const WeightGemm& w = g.list[i];
    const double x = w.count * w.m * w.k, dy = w.count * w.m * w.n;
    c.fwd_s[group] += kernels(x);
    c.bwd_s[group] += kernels(dy);
    c.x += x;
    c.dy += dy;
  }
  const double per_elem = c.amax * d.a + d.a + c.copies * (1 + c.scale);
  c.fwd_bytes = c.x * per_elem;
  c.bwd_bytes = c.dy * per_elem;
  return c;
}

// Records the FP8 terms of one layer (LayerKernels); t[] per Fp8Group.
void RecordFp8(Derivation* why, const Dims& d, const Fp8Casts& c, const TpGemmTime t[4]) {
  const double fwd = t[0].fwd + t[1].fwd + t[2].fwd + t[3].fwd;
  P3D_TERM(why, "layer.fp8.gemms.forward", "qkv + out + fc1 + fc2", fwd,
           "the layer's weight GEMMs (all but the MoE router) in FP8 at fp8_peak*eff8(2MNK)",
           {"qkv", t[0].fwd}, {"out", t[1].fwd}, {"fc1", t[2].fwd}, {"fc2", t[3].fwd});
  auto b = [&](int i) { return t[i].dgrad + t[i].wgrad; };
  P3D_TERM(why, "layer.fp8.gemms.backward", "qkv + out + fc1 + fc2", b(0) + b(1) + b(2) + b(3),
           "dgrad and wgrad (fp32 accumulate) of the FP8 weight GEMMs", {"qkv", b(0)},
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

// Attention core: scores = Q K^T (S x S x HD_qk) and out = P V (S x HD_v x S) per
// head, B*NH/TP heads per batched call, cut into n causal query blocks as the
// executor does (executor/model.h): block i of n multiplies its S/n queries by
// the (i+1)*S/n keys of blocks <= i, so the blocks do (n+1)/(2n) of the square.
// A windowed layer's block needs only the keys of the last W positions before
// its queries: at most W + S/n of them.
double BlockKeys(const Dims& d, int i) {
  const double sb = d.s / d.blocks, keys = (i + 1) * sb;
  return d.keys < d.s ? std::min(keys, d.keys + sb) : keys;
}
double CoreForwardGemms(const GpuSpec& gpu, const Dims& d) {
  const double batch = d.b * d.heads, sb = d.s / d.blocks;
  double seconds = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) {
    const double keys = BlockKeys(d, i);
    seconds += GemmSeconds(gpu, sb, keys, d.hd_qk, batch, d.a) + GemmSeconds(gpu, sb, d.hd_v, keys, batch, d.a);
  }
  return seconds;
}
// dP = dO V^T (S x S x HD_v); dV = P^T dO (S x HD_v x S), dQ = dS K, dK = dS^T Q (S x HD_qk x S), per block.
double CoreBackwardGemms(const GpuSpec& gpu, const Dims& d) {
  const double batch = d.b * d.heads, sb = d.s / d.blocks;
  double seconds = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) {
    const double keys = BlockKeys(d, i);
    seconds += GemmSeconds(gpu, sb, keys, d.hd_v, batch, d.a) + GemmSeconds(gpu, sb, d.hd_v, keys, batch, d.a) +
               2 * GemmSeconds(gpu, sb, d.hd_qk, keys, batch, d.a);
  }
  return seconds;
}

// The fused core (cuDNN flash attention, executor/fused_attention.h): one
// kernel each way, compute-bound, skipping what the causal mask (and a
// sliding window) leaves out: forward 2 GEMMs over the attended (query, key)
// pairs, 2*B*NH/TP*pairs*(HD_qk + HD_v) FLOPs with pairs = S^2/2 (causal) or
// S*W - W^2/2 (window W < S); backward 5 GEMMs, 2.5x that. With context
// parallel each rank does 1/CP of it: its 2 of the 2*CP load-balanced chunks
// meet 2 chunk-pairs' worth of keys per ring step, CP steps, of the 2*CP^2 of
// the causal square (TransformerEngine context_parallel.py: the diagonal step
// and, off the diagonal, "q all, kv first half" or "q second half, kv all").
// Uncalibrated efficiencies (of dense bf16 peak): p3d-attention-bench
// at B4 NH16 S2048 HD128 on an H100 SXM, cuDNN 9.14: forward 452, backward 333
// TFLOP/s of 989 (bench/results/fused-attention.md).
constexpr double kFusedForwardEfficiency = 0.46, kFusedBackwardEfficiency = 0.34;
double FusedForwardFlops(const Dims& d) {
  const double pairs = d.keys < d.s ? d.s * d.keys - d.keys * d.keys / 2 : d.s * d.s / 2;
  return 2 * d.b * d.heads * pairs * (d.hd_qk + d.hd_v) / d.cp;
}

// Forward FLOPs of the blocked core (AttentionEfficiencyPoint::flops): two
// GEMM families of 2 * S_q * keys * HD per head over the causal blocks.
double CoreForwardFlops(const Dims& d) {
  double keys = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) keys += BlockKeys(d, i);
  return 2 * d.b * d.heads * (d.s / d.blocks) * keys * (d.hd_qk + d.hd_v);
}

// Elements of the score matrix the blocked attention materialises: (n+1)/(2n) of
// B*NH/TP*S*S (fewer keys per block in a windowed layer).
double ScoreElements(const Dims& d) {
  double keys = 0;
  for (int i = 0; i < static_cast<int>(d.blocks); ++i) keys += BlockKeys(d, i);
  return d.b * d.heads * (d.s / d.blocks) * keys;
}

// Memory-bound bytes of the attention core's elementwise part, forward:
// scale + causal mask + softmax reads the scores and writes the
// probabilities; attention dropout reads and writes them and writes a 1-byte
// mask; the context [B*NH/TP, S, HD_v] is permuted back to [T, NH/TP*HD_v] (a copy:
// read + write T*o).
double CoreForwardBytes(const Dims& d) {
  const double scores = ScoreElements(d);
  return scores * 2 * d.a + (d.dropout ? scores * (2 * d.a + 1) : 0) + 2 * d.t * d.o * d.a;
}
// Backward: softmax backward reads P and dP and writes dS; dropout backward
// reads dP and the mask and writes dP; the context gradient is permuted.
double CoreBackwardBytes(const Dims& d) {
  const double scores = ScoreElements(d);
  return scores * 3 * d.a + (d.dropout ? scores * (2 * d.a + 1) : 0) + 2 * d.t * d.o * d.a;
}

// A MoE layer's token shuffles, bytes of one pass (forward; backward moves
// the gradients through the inverse kernels, the same bytes), each kernel
// reading and writing its tokens once:
//   permute + unpermute (every dispatcher): the T*k routed copies of this
//     rank's tokens gathered into expert order before the dispatch and
//     scattered back (weighted by the router probabilities) after the
//     combine: 2 kernels of 2*T*k*H*a (Megatron-Core moe_utils.py permute /
//     unpermute, TE's fused moe_permute with --moe-permute-fusion).
//   sort + unsort by local expert (all-to-all dispatch, EP > 1, E/EP > 1):
//     the tokens this rank receives, T*k/(TP/ETP) (balanced routing), arrive
//     grouped by source rank and are reordered so each local expert's tokens
//     are contiguous for the grouped GEMM, and back before the combine: 2
//     kernels of 2*T*k/(TP/ETP)*H*a (Megatron-Core token_dispatcher.py
//     MoEAlltoAllTokenDispatcher "Permutation 2", sort_chunks_by_idxs in
//     dispatch_postprocess / combine_preprocess; torchtitan's
//     expert_parallel.py permutes the received tokens the same way).
struct MoeShuffle {
  double permute = 0;  // bytes of each of the 2 permute kernels
  double sort = 0;     // bytes of each of the 2 sort kernels (0: no sort)
};
MoeShuffle MoeShuffleBytes(const Dims& d) {
  MoeShuffle m;
  if (!d.moe) return m;
  m.permute = 2 * d.t * d.topk * d.h * d.a;
  if (d.ep > 1 && d.experts / d.ep > 1) m.sort = 2 * d.t * d.topk / d.tp_over_etp * d.h * d.a;
  return m;
}
// Seconds of one pass's shuffles: each kernel at HBM*eff(its bytes).
double KernelSeconds(const GpuSpec& gpu, double bytes) { return bytes > 0 ? MemoryBoundSeconds(gpu, bytes) : 0; }
double MoeShuffleSeconds(const GpuSpec& gpu, const MoeShuffle& m) {
  return 2 * KernelSeconds(gpu, m.permute) + 2 * KernelSeconds(gpu, m.sort);
}

// The rest of the layer's memory-bound ops, forward, bytes (each op one kernel,
// timed by MemoryBoundSeconds at its own size):
//   2 norms             read x, write y                      2 * 2*T_sp*H*a
//   q/k norms (Qwen3)   read + write q and k                 2*T*(q + kv)*a
//   MLA latent norms    read + write q_lora and kv_lora      2*T*(q_lora + kv_lora)*a
//   rotary (Llama)      read + write q and k                 2*T*(q + kv)*a
//                       (inside a calibrated attention core: not counted here)
//   2 residual adds     read 2, write 1                      2 * 3*T_sp*H*a
//   2 hidden dropouts   (dropout on) + 1-byte mask write     2 * T_sp*H*1
//   activation          GELU: read, write T*F; SwiGLU: read gate and up, write one
//                       (MoE: per routed token, k*T, and per shared expert, s*T);
//                       none where the GELU runs in the fc GEMM's epilogue (its
//                       extra store is in the GEMM's time, which is compute-bound)
//   MoE token shuffles  MoeShuffleBytes: permute + unpermute, and with an
//                       all-to-all dispatch the sort + unsort by local expert
//   q/k/v bias add      a separate kernel after the GEMM (the other biases
//                       fuse into bias-GELU and bias-dropout-add)   2*T*(q + 2kv)*a
//   q/k/v split         eager PyTorch only (Framework::elementwise)  split_f*T*(q + 2kv)*a
// An eager framework's rotary and SwiGLU move its own bytes per element
// (Dims::rotary_f, act_f) instead of the fused kernels' 2a and 3a.
double LayerForwardSeconds(const GpuSpec& gpu, const Dims& d, bool core_calibrated) {
  auto k = [&](double bytes) { return MemoryBoundSeconds(gpu, bytes); };
  double s = 2 * k(2 * d.t_sp * d.h * d.a) + 2 * k(3 * d.t_sp * d.h * d.a);
  if (d.qkv_bias) s += k(2 * d.t * (d.q + 2 * d.kv) * d.a);
  if (d.qk_norm) s += k(2 * d.t * (d.q + d.kv) * d.a);
  if (d.mla) s += k(2 * d.t * (d.q_lora + d.kv_lora) * d.a);
  if (d.rotary && !core_calibrated) s += k(d.rotary_f * d.t * (d.q + d.kv) * d.a);
  if (d.split_f > 0) s += k(d.split_f * d.t * (d.q + 2 * d.kv) * d.a);
  if (d.dropout) s += 2 * k(d.t_sp * d.h);
  if (!d.gelu_epilogue)
    s += k(d.t * (d.topk / d.tp_over_etp * d.f + d.shared * d.fs) * d.act_f * d.a);
  return s + MoeShuffleSeconds(gpu, MoeShuffleBytes(d));
}
// Backward: norm backward reads x and dy twice (one pass for the weight
// gradient, one for dx) and writes dx (5 tensors); residual branches add
// gradients (read 2, write 1); rotary as forward; dropout reads dy and the
// mask and writes dx; GELU backward reads x and dy, writes dx (3); SwiGLU
// backward reads gate, up, dy and writes dgate, dup (5); MoE permutes the
// gradients back (MoeShuffleBytes); each bias gradient reads its GEMM's output gradient once
// (q/k/v: T*(q+2kv); GPT-2 also fc: T*F/TP, out-proj and fc2: T_sp*H) unless
// the weight-gradient GEMMs compute them; no GELU pass with the GELU gradient in
// the GEMM's epilogue; the q/k and latent norms as the layer norms (5 tensors);
// an eager framework's rotary, SwiGLU and q/k/v split as Dims::rotary_b, act_b, split_b.
double LayerBackwardSeconds(const GpuSpec& gpu, const Dims& d, bool core_calibrated) {
  auto k = [&](double bytes) { return MemoryBoundSeconds(gpu, bytes); };
  double s = 2 * k(5 * d.t_sp * d.h * d.a) + 2 * k(3 * d.t_sp * d.h * d.a);
  if (d.qkv_bias && !d.bias_grad_epilogue) s += k(d.t * (d.q + 2 * d.kv) * d.a);
  if (d.qk_norm) s += k(5 * d.t * (d.q + d.kv) * d.a / 2);
  if (d.mla) s += k(5 * d.t * (d.q_lora + d.kv_lora) * d.a / 2);
  if (d.linear_bias && !d.bias_grad_epilogue)
    s += k(d.t * d.f * d.topk * d.a) + 2 * k(d.t_sp * d.h * d.a);
  if (d.rotary && !core_calibrated) s += k(d.rotary_b * d.t * (d.q + d.kv) * d.a);
  if (d.split_b > 0) s += k(d.split_b * d.t * (d.q + 2 * d.kv) * d.a);
  if (d.dropout) s += 2 * k(d.t_sp * d.h * (2 * d.a + 1));
  if (!d.gelu_epilogue)
    s += k(d.t * (d.topk / d.tp_over_etp * d.f + d.shared * d.fs) * d.act_b * d.a);
  return s + MoeShuffleSeconds(gpu, MoeShuffleBytes(d));
}

}  // namespace

LayerKernelTimes LayerKernels(const ModelSpec& model, const LayerKind& kind,
                              const TrainingSpec& training, const GpuSpec& gpu,
                              const ComputeShape& shape, Derivation* why) {
  const Dims d = MakeDims(model, kind, training, shape);
  const LayerGemms gemms = WeightGemms(d);
  LayerKernelTimes out;
  TpGemmTime timed[10];
  const bool fp8 = d.fp8 != Fp8Recipe::kOff;
  for (int i = 0; i < gemms.n; ++i) {
    timed[i] = fp8 && Fp8Group(gemms, i) >= 0 ? Fp8Timed(gpu, d, gemms.list[i]) : Timed(gpu, d, gemms.list[i]);
    out.forward.gemm_s += timed[i].fwd;
    out.backward.gemm_s += timed[i].dgrad + timed[i].wgrad;
  }
  auto sum = [&](int first, int end) {
    TpGemmTime t;
    for (int i = first; i < end; ++i) t.fwd += timed[i].fwd, t.dgrad += timed[i].dgrad, t.wgrad += timed[i].wgrad;
    return t;
  };
  if (fp8) {
    const Fp8Casts casts = Fp8CastTimes(gpu, d, gemms);
    for (int i = 0; i < 4; ++i) {
      out.forward.memory_s += casts.fwd_s[i];
      out.backward.memory_s += casts.bwd_s[i];
    }
    const TpGemmTime groups[4] = {sum(0, gemms.out_proj), timed[gemms.out_proj],
                                  sum(gemms.fc1_first, gemms.fc1_end), sum(gemms.fc2_first, gemms.fc2_end)};
    if (why != nullptr) RecordFp8(why, d, casts, groups);
  }
  out.column[0] = sum(gemms.qkv_first, gemms.qkv_end), out.column[1] = sum(gemms.fc1_first, gemms.fc1_end);
  out.row[0] = timed[gemms.out_proj], out.row[1] = sum(gemms.fc2_first, gemms.fc2_end);
  // The attention core: measured (its GEMMs, softmax and head layouts as one
  // unit, AttentionEfficiencyPoint) or GEMM table + score-matrix traffic.
  KernelTime core_fwd, core_bwd, core_probs;
  AttentionEfficiencyPoint cal;
  const double core_flops = CoreForwardFlops(d);
  const bool fused = shape.attention == AttentionImpl::kFused;
  // Calibrated attention points time the unfused core (p3d-calibrate's probe).
  const bool calibrated = !fused && AttentionEfficiency(gpu, d.hd_qk, d.s, core_flops, &cal);
  if (fused) {
    // Rotary runs as its own kernel (counted by LayerForwardSeconds); the
    // selective recompute of the fused core recomputes nothing (docs/executor.md).
    // Another framework's kernel runs at its published speed relative to
    // cuDNN's on this card (attention_kernels.h), at the length of each call:
    // S, or with context parallel the S/CP tokens of one ring step.
    const AttentionKernel kernel = training.framework.attention_kernel;
    const double call = d.s / d.cp;
    const double fwd_speed = AttentionKernelSpeed(gpu, kernel, call, AttentionPass::kForward);
    const double bwd_speed = AttentionKernelSpeed(gpu, kernel, call, AttentionPass::kBackward);
    core_fwd.gemm_s = FusedForwardFlops(d) / (gpu.peak_flops * kFusedForwardEfficiency * fwd_speed);
    core_bwd.gemm_s =
        2.5 * FusedForwardFlops(d) / (gpu.peak_flops * kFusedBackwardEfficiency * bwd_speed);
    if (d.cp > 1) {
      // Context parallel's per-step merges, one memory-bound kernel per ring
      // step (TransformerEngine context_parallel.py): forward, the step's
      // partial output and fp32 log-sum-exp rescaled into the running ones
      // (flash_attn_fwd_out_correction, ..._softmax_lse_correction: read the
      // step's, read and write the running: 3*T*(q*a + 4*NH/TP)); backward,
      // the step's dQ and dK/dV added into the accumulators (3*T*(q + 2kv)*a).
      core_fwd.memory_s = d.cp * MemoryBoundSeconds(gpu, 3 * d.t * (d.q * d.a + 4 * d.heads));
      core_bwd.memory_s = d.cp * MemoryBoundSeconds(gpu, 3 * d.t * (d.q + 2 * d.kv) * d.a);
    }
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
  out.core_forward_s = core_fwd.total();
  out.core_backward_s = core_bwd.total();
  if (d.moe && why != nullptr) {
    const MoeShuffle m = MoeShuffleBytes(d);
    P3D_TERM(why, "layer.moe.permute_bytes", "2*T*k*H*e", m.permute,
             "each of the 2 token-permute kernels of a pass (permute before the dispatch, unpermute after "
             "the combine)",
             {"T", d.t}, {"k", d.topk}, {"H", d.h}, {"e", d.a});
    P3D_TERM(why, "layer.moe.sort_bytes", "sorted*2*T*k/tpe*H*e", m.sort,
             "each of the 2 sort-by-local-expert kernels of a pass (all-to-all dispatch, EP > 1 and more "
             "than one local expert: sorted = 1; tpe = TP/ETP)",
             {"sorted", m.sort > 0 ? 1.0 : 0.0}, {"T", d.t}, {"k", d.topk}, {"tpe", d.tp_over_etp},
             {"H", d.h}, {"e", d.a});
    P3D_TERM(why, "layer.moe.shuffle", "2*permute + 2*sort", MoeShuffleSeconds(gpu, m),
             "one pass's token shuffles, each kernel at HBM*eff(its bytes) (forward; backward the same)",
             {"permute", KernelSeconds(gpu, m.permute)}, {"sort", KernelSeconds(gpu, m.sort)});
  }
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
          out.recompute.gemm_s = d.llama ? out.column[0].fwd * d.kv / (d.q + 2 * d.kv) + out.row[0].fwd +
                                               out.column[1].fwd / 2
                                         : out.row[0].fwd + out.row[1].fwd;
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
  const Dims d = MakeDims(model, LayerKind{}, training, shape);
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
  // forward and reads them and writes their gradient backward; eager PyTorch
  // (Framework::elementwise) moves its own bytes per logit.
  const bool fused_ce = training.framework.fused_cross_entropy;
  const std::optional<ElementwiseBytes>& eager = training.framework.elementwise;
  const double loss_f = fused_ce ? d.a : eager ? eager->loss.forward : d.a + 16;
  const double loss_b = fused_ce ? 2 * d.a : eager ? eager->loss.backward : 4 + d.a;
  e.head_forward.memory_s = k(2 * d.t_sp * d.h * d.a) + k(d.t * v * loss_f);
  e.head_backward.memory_s = k(3 * d.t_sp * d.h * d.a) + k(d.t * v * loss_b);
  return e;
}

}  // namespace p3d
