// Compute model: kernel time of one transformer layer (and of the embedding,
// and of the LM head + loss) for one micro-batch on one GPU, under a plan's
// tensor parallelism, sequence parallelism and recompute mode.
//
// GEMMs: each GEMM of the layer at its TP-sharded shape (M x N x K per rank)
// takes max(FLOPs / (peak * GemmEfficiency(gpu, FLOPs)),
//           bytes / (HBM bandwidth * hbm_efficiency)),
// where bytes = A + B + C at the activation width (weight-gradient GEMMs
// read and write the fp32 (grad_bytes) accumulation buffer instead of
// writing C). The attention core runs as two cuBLAS strided-batched GEMMs
// (QK^T and P*V over B*NH/TP heads) with the softmax in between, which is
// what the executor runs first (no fused/flash attention); a batched call's
// efficiency is looked up at the FLOPs of the whole call.
// Calibrated profiles (docs/calibration.md) replace three of these with
// measurements: a GEMM of a measured plan shape takes its measured time
// (GpuSpec::gemm_shapes), the attention core is timed as a unit from its
// measured efficiency (GpuSpec::attention_efficiency: GEMMs, softmax and head
// layouts together), and each memory-bound op runs at the measured efficiency
// of its size (GpuSpec::hbm_efficiency_by_bytes).
// Memory-bound ops: bytes moved / (HBM bandwidth * HbmEfficiency(bytes)), one
// kernel per op; every op's bytes are listed in compute_model.cc and
// docs/time-model.md.
// Backward GEMMs: dX = dY W^T and dW = X^T dY per weight GEMM; the attention
// core's four backward batched GEMMs (dP, dV, dS->dQ, dK).
// Recompute: selective re-runs the attention core forward (two batched GEMMs,
// softmax, attention dropout); full re-runs the whole layer forward.
//
// MoE layers: the routed experts run as E grouped GEMMs of T*k/E tokens each
// (balanced routing, no capacity factor: the named assumption
// "moe.balanced_routing", docs/time-model.md), each at the GEMM-curve
// efficiency of its own small size; shared experts as one GEMM over all T
// tokens; the router as a T x E x H GEMM; the token shuffles (permute /
// unpermute of the routed tokens, and with an all-to-all dispatch the sort by
// local expert and its inverse) as memory-bound copies (compute_model.cc
// MoeShuffleBytes; "layer.moe.*" in --explain).
// Units: seconds. Thread-safety: pure functions.
#pragma once

#include <cstdint>

#include "models/model_spec.h"
#include "common/plan.h"
#include "simulator/derivation.h"
#include "simulator/hardware.h"

namespace p3d {

// Seconds of one kernel class; gemm + memory = total kernel time.
struct KernelTime {
  double gemm_s = 0;
  double memory_s = 0;
  double total() const { return gemm_s + memory_s; }
  KernelTime& operator+=(const KernelTime& o) {
    gemm_s += o.gemm_s;
    memory_s += o.memory_s;
    return *this;
  }
};

// One weight GEMM of the layer next to which a tensor-parallel collective
// runs (TpOverlap, common/framework.h), seconds per micro-batch.
struct TpGemmTime {
  double fwd = 0, dgrad = 0, wgrad = 0;
};

// One transformer layer, one micro-batch (B = micro_batch sequences, S/CP
// tokens of each on this rank), one GPU.
struct LayerKernelTimes {
  KernelTime forward;
  KernelTime backward;   // input- and weight-gradient GEMMs + memory-bound backward ops
  KernelTime recompute;  // forward work repeated during backward (0 without recompute)
  // The column-parallel GEMMs (q/k/v, fc1 or gate+up), whose inputs TP
  // all-gathers (SP) and whose input gradients it reduces, and the
  // row-parallel ones (out-proj, fc2 or down), whose outputs it reduces.
  TpGemmTime column[2], row[2];
  // The attention core's kernels (part of forward and backward): context
  // parallel's ring runs one CP-th of them per step (time_model.cc).
  double core_forward_s = 0, core_backward_s = 0;
};
// Embedding on pipeline stage 0, and final norm + LM head + cross-entropy on
// the last stage, one micro-batch, one GPU.
struct EdgeKernelTimes {
  KernelTime embedding_forward, embedding_backward;
  KernelTime head_forward, head_backward;
};

// The shape parameters the kernel times depend on (the cache key of TimeModel).
struct ComputeShape {
  int tp = 1;
  int64_t micro_batch = 1;
  Recompute recompute = Recompute::kNone;
  bool sequence_parallel = false;
  AttentionImpl attention = AttentionImpl::kFused;
  int cp = 1;   // context parallel: B*S/CP tokens per rank, 1/CP of the causal attention
  int ep = 1;   // expert parallelism: E/EP local experts ...
  int etp = 0;  // ... of width expert_ffn/ETP (0 = TP), T*k*EP*ETP/(TP*E) tokens each
};

// One layer of `kind` (dense or MoE FFN, full or windowed attention).
// FP8 (TrainingSpec::fp8 != kOff, docs/time-model.md "FP8"): the layer's
// weight GEMMs (q/k/v and MLA's projections, out-proj, the FFN's fc1/fc2 of
// the dense MLP, the routed and the shared experts) run as FP8 GEMMs
// (Fp8GemmSeconds) in all three passes; the attention core, norms, the MoE
// router, embedding and LM head stay bf16. Each FP8 GEMM input is quantized
// by a memory-bound cast: forward the GEMM input X [T, K] (read e*T*K, write
// `copies` FP8 copies of 1 + scale bytes each: Fp8Copies), backward the output
// gradient dY [T, N] likewise; current scaling (tensorwise) reads the input
// once more for its amax first. `why` non-null records the FP8 terms
// ("layer.fp8.*").
LayerKernelTimes LayerKernels(const ModelSpec& model, const LayerKind& kind,
                              const TrainingSpec& training, const GpuSpec& gpu,
                              const ComputeShape& shape, Derivation* why = nullptr);
EdgeKernelTimes EdgeKernels(const ModelSpec& model, const TrainingSpec& training,
                            const GpuSpec& gpu, const ComputeShape& shape);

// One GEMM C[M,N] = A[M,K] * B[K,N], `batch` of them in one call; bytes as
// described above with `elem` bytes per element; `accumulate_bytes` > 0 means
// C is an accumulation buffer of that width (read and written).
double GemmSeconds(const GpuSpec& gpu, double m, double n, double k, double batch, double elem,
                   double accumulate_bytes = 0);
// One FP8 GEMM C[M,N] = A[M,K] * B[K,N]: FLOPs at fp8_peak_flops *
// Fp8GemmEfficiency, bytes A and B at 1 byte per element and C at
// `c_bytes` (bf16 output 2; an fp32 accumulation buffer read and written: 8).
double Fp8GemmSeconds(const GpuSpec& gpu, double m, double n, double k, double c_bytes);
// FP8 copies Transformer Engine makes of each quantized tensor: 2 (row-wise
// and column-wise / transposed) where the GPU's FP8 GEMMs take only the TN
// layout (GpuSpec::fp8_tn_only, Hopper) or the recipe scales blocks along
// one direction (blockwise, mxfp8: a copy per direction), else 1.
double Fp8Copies(const GpuSpec& gpu, Fp8Recipe recipe);
// Seconds to move `bytes` through HBM at the GPU's achievable bandwidth.
double MemoryBoundSeconds(const GpuSpec& gpu, double bytes);

// AdamW step over `params` parameters on one GPU: reads fp32 master, m, v and
// the gradient, writes master, m, v and the bf16 working copy, plus one read
// of the gradient for the global-norm clip:
//   bytes/param = 2*(master + optimizer) + 2*grad + param  (34 for the default recipe),
// at hbm * optimizer_efficiency when calibrated, else hbm * hbm_efficiency.
double OptimizerSeconds(const GpuSpec& gpu, const Precision& precision, double params);

}  // namespace p3d
