// FLOP counts of a decoder-only transformer: the single definition shared by
// the simulator (time model) and the executor (MFU it reports).
//
// Convention (Narayanan et al. 2021; Korthikanti et al. 2022), "model FLOPs":
//   - Only matrix multiplies are counted; one multiply-accumulate = 2 FLOPs.
//     Norms, softmax, activations, residual adds, rotary and the loss are
//     memory-bound and are timed from bytes moved instead (simulator/compute_model.h).
//   - Attention scores are counted as the full S x S matrix for QK^T and for
//     P*V (4*S*H per token per layer forward), NOT halved for causal masking:
//     the dense kernels p3d assumes compute the masked half too, and the
//     papers' formulas count it.
//   - Backward = 2 x forward: an input-gradient GEMM and a weight-gradient
//     GEMM per weight GEMM; the attention core (QK^T, P*V) has no weights and
//     its 2 x forward backward is all input-gradient.
//   - Recompute adds the forward of what is recomputed: selective = the
//     attention core (QK^T, P*V); full = the whole transformer layer forward.
//     The LM head is never recomputed.
//   - The LM head counts 2*H*V per token forward (tied or not). The embedding
//     lookup is a gather: 0 FLOPs.
//   - GQA: q and o are H x H, k and v are H x KV*HD. SwiGLU: three H x F
//     matrices. MoE: top-k experts per token plus the H x E router.
// "Hardware FLOPs" = model FLOPs + recompute FLOPs.
//
// With GPT shapes (F = 4H, no GQA), no recompute:
//   model FLOPs per step = 72*B*S*L*H^2 * (1 + S/(6H) + V/(12*L*H)),
// and with full recompute 96*B*S*L*H^2 * (1 + S/(6H) + V/(16*L*H)).
// All counts are doubles (they exceed 2^63 for large runs only in FLOPs*steps,
// but doubles keep the arithmetic uniform); per token unless stated.
#pragma once

#include <cstdint>

#include "models/model_spec.h"
#include "common/plan.h"

namespace p3d {

// Forward FLOPs of one transformer layer of one kind for one token, whole
// layer (not TP-sharded), split by GEMM group. `seq` is S (for the attention core).
struct LayerGemmFlops {
  double qkv = 0;        // 2*H*(NH*HD + 2*KV*HD); MLA: its down and up projections
  double attn_core = 0;  // QK^T + P*V: 2*K*NH*HD_qk + 2*K*NH*HD_v, K = attended keys
  double out_proj = 0;   // 2*NH*HD_v*H
  double mlp = 0;        // dense FFN, or top-k + shared experts (2 or 3 matrices) + router 2*H*E
  double total() const { return qkv + attn_core + out_proj + mlp; }
  double weight_gemms() const { return qkv + out_proj + mlp; }  // GEMMs that have a weight
};
LayerGemmFlops LayerForwardFlopsPerToken(const ModelSpec& model, const LayerKind& kind, int64_t seq);

// LM head forward FLOPs per token: 2*H*V.
double HeadForwardFlopsPerToken(const ModelSpec& model);

// FLOPs of one pass kind, per token. total() = forward + backward + recompute.
struct PassFlops {
  double forward = 0;
  double backward_input = 0;   // input-gradient GEMMs (incl. the attention core backward)
  double backward_weight = 0;  // weight-gradient GEMMs
  double recompute = 0;        // forward work repeated in backward
  double backward() const { return backward_input + backward_weight; }
  double model() const { return forward + backward(); }  // excludes recompute
  double total() const { return model() + recompute; }
};
// One transformer layer of one kind, one token, with the given recompute mode.
PassFlops LayerPassFlopsPerToken(const ModelSpec& model, const LayerKind& kind, int64_t seq,
                                 Recompute recompute);
// The LM head, one token (never recomputed).
PassFlops HeadPassFlopsPerToken(const ModelSpec& model);

// Model FLOPs of one optimizer step: all layers + LM head, forward and
// backward, for global_batch sequences of seq tokens. Independent of the plan
// and of recompute (the MFU numerator).
double ModelFlopsPerStep(const ModelSpec& model, int64_t global_batch, int64_t seq);
// Hardware FLOPs of one step: model FLOPs + the recompute mode's extra
// forward work (the HFU numerator).
double HardwareFlopsPerStep(const ModelSpec& model, const TrainingSpec& training,
                            Recompute recompute);

}  // namespace p3d
