// Internal building blocks of the memory model (memory_model.cc), which
// record their --explain terms where they compute them (derivation.h). Not
// part of the public API: use simulator/memory_model.h.
#pragma once

#include <cstdint>

#include "common/plan.h"
#include "models/model_spec.h"
#include "simulator/derivation.h"

namespace p3d::memory_internal {

// KVD_r: K (or V) width on one TP rank (ModelSpec::KvHeadsPerTpRank heads of HD).
inline double KvDimPerRank(const ModelSpec& model, int tp) {
  return static_cast<double>(model.KvHeadsPerTpRank(tp) * model.head_dim());
}

// Per-token widths of the attention on one TP rank: q, k and v (the core's
// inputs), o (the output projection's input) and MLA's replicated latents
// (q_lora + kv_lora + rope: the up projections' inputs).
struct AttentionWidths {
  double q = 0, k = 0, v = 0, o = 0, latent = 0;
  static AttentionWidths Of(const ModelSpec& model, int tp) {
    AttentionWidths w;
    const double nh_r = static_cast<double>(model.heads) / tp;
    w.q = nh_r * static_cast<double>(model.qk_head_dim());
    w.o = nh_r * static_cast<double>(model.v_dim_per_head());
    if (model.mla()) {
      w.k = w.q;
      w.v = w.o;
      w.latent = static_cast<double>(model.q_lora_rank + model.kv_lora_rank + model.qk_rope_head_dim);
    } else {
      w.k = w.v = KvDimPerRank(model, tp);
    }
    return w;
  }
};

// What one transformer layer stores for one micro-batch on one GPU, bytes,
// grouped the way Korthikanti's Table 2 groups them (docs/memory-model.md):
//   hidden  e*B*S*H/SPd x (3 + k): LN1 input, QKV input, LN2 input, MLP input
//           (k routed copies for MoE)             -> Korthikanti's 8sbh
//           (every group with T = B*S/CP tokens: MicroBatchTokens)
//   masks   drop * 2*B*S*H/SPd: attention-output and MLP-output dropout masks
//                                                 -> 2sbh
//   split   e*B*S*(Q_r + K_r + V_r + O_r + lat + c*(k + s)*F/TP): Q, K, V,
//           output-projection input, MLA latents, MLP intermediates (c = 2
//           GELU, 3 SwiGLU; MoE: k routed + s shared experts of width F =
//           expert_ffn) -> 24sbh/t
//   scores  unfused core: B*S*S*NH/TP*(e + drop*(1 + e)): softmax output,
//           dropout mask and dropout output      -> 5as^2b/t
//           fused core: 4*B*S*NH/TP, the fp32 row log-sum-exp the backward
//           re-derives the probabilities from (no S x S term; a fused
//           dropout regenerates its mask from the RNG state)
//   input   e*B*S*H/SPd: the layer input (all that full recompute keeps) -> 2sbh
// with e = activation bytes, drop = 1 if dropout else 0, SPd = Plan::sequence_shards().
// Selective recompute drops the scores of the unfused core and recomputes
// them in backward; with the fused core there is nothing S x S to drop, and
// it stores what none stores (docs/executor.md). That is the "scores" and
// "core-attention" policies of Framework::selective; "op-level" (torchtitan)
// keeps the layer input, the outputs of every second matmul (Llama: wq, wv,
// w1, w2 -> H/TP, KVD_r, k*F/TP and the reduce-scattered H/SPd; GPT: qkv and
// fc1), the attention output (H/TP) and the core's own saved tensors (scores).
//   fp8     with an FP8 recipe (TrainingSpec::fp8), Transformer Engine saves
//           each linear layer's input for its weight gradient as one FP8 copy
//           (1 + s bytes, s = Fp8ActivationScaleBytes; module/linear.py keeps
//           only the column-wise data) instead of e bytes: the q/k/v and MLP
//           inputs (1 + k of the hidden group) and the fc2 inputs ((k + s)*F/TP
//           of split: routed and shared experts) change by (1 + s - e); the
//           out-proj input (O_r) changes by that
//           with the unfused core, while the fused core keeps its bf16 output
//           O for its own backward beside the FP8 copy (+ (1 + s)).
//           Op-level selective recompute: not modelled (0).
struct LayerActivations {
  double hidden = 0;
  double masks = 0;
  double split = 0;
  double scores = 0;
  double input = 0;
  double op_level = 0;  // stored under the op-level policy, else 0
  double fp8 = 0;       // FP8 saved inputs minus the bf16 ones they replace (may be < 0)
  bool fused = false;   // Plan::attention == kFused
  SelectiveRecompute selective = SelectiveRecompute::kScores;  // Framework::selective

  // Records the five groups as "activations.per_layer.*" when `why` is set.
  // `moe`: a layer with routed experts (LayerKind::moe), else a dense FFN.
  static LayerActivations Of(const ModelSpec& model, bool moe, const TrainingSpec& training,
                             const Plan& plan, Derivation* why = nullptr) {
    const double e = training.precision.activation_bytes;
    const double T = MicroBatchTokens(plan, training);  // B*S
    const double SPd = plan.sequence_shards();
    const double H = static_cast<double>(model.hidden);
    // k routed copies of each token and s shared experts, of width F.
    const double k = moe ? static_cast<double>(model.experts_per_token) : 1;
    const double s = moe ? static_cast<double>(model.shared_experts) : 0;
    const double F = static_cast<double>(moe ? model.expert_ffn() : model.ffn);
    // SwiGLU in eager PyTorch also keeps silu's output (Framework::swiglu_saves_silu).
    const double c = model.arch == Arch::kGpt2 ? 2 : training.framework.swiglu_saves_silu ? 4 : 3;
    const double drop = training.dropout ? 1 : 0;
    const double TP = plan.tp;
    const AttentionWidths w = AttentionWidths::Of(model, plan.tp);
    const double Q_r = w.q, K_r = w.k, V_r = w.v, O_r = w.o, lat = w.latent;
    const double NH = static_cast<double>(model.heads), S = static_cast<double>(training.seq);
    LayerActivations a;
    a.hidden = P3D_TERM(why, "activations.per_layer.hidden", "e*T*H/SPd*(3 + k)",
                        e * T * H / SPd * (3 + k), "norm and GEMM inputs, T = B*S/CP tokens", {"e", e},
                        {"T", T}, {"H", H}, {"SPd", SPd}, {"k", k});
    a.masks = P3D_TERM(why, "activations.per_layer.masks", "drop*2*T*H/SPd", drop * 2 * T * H / SPd,
                       "1-byte dropout masks of the attention and MLP outputs", {"drop", drop},
                       {"T", T}, {"H", H}, {"SPd", SPd});
    a.split = P3D_TERM(why, "activations.per_layer.split", "e*T*(Q_r + K_r + V_r + O_r + lat + c*(k + s)*F/TP)",
                       e * T * (Q_r + K_r + V_r + O_r + lat + c * (k + s) * F / TP),
                       "Q, K, V, output-projection input, MLA latents, MLP intermediates", {"e", e},
                       {"T", T}, {"Q_r", Q_r}, {"K_r", K_r}, {"V_r", V_r}, {"O_r", O_r}, {"lat", lat},
                       {"c", c}, {"k", k}, {"s", s}, {"F", F}, {"TP", TP});
    a.fused = plan.attention == AttentionImpl::kFused;
    a.scores = a.fused
                   ? P3D_TERM(why, "activations.per_layer.scores", "4*T*NH/TP", 4 * T * NH / TP,
                              "fused attention: the fp32 row log-sum-exp", {"T", T}, {"NH", NH},
                              {"TP", TP})
                   : P3D_TERM(why, "activations.per_layer.scores", "T*S*NH/TP*(e + drop*(1 + e))",
                              T * S * NH / TP * (e + drop * (1 + e)),
                              "unfused attention: S x S probabilities (and dropout)", {"T", T},
                              {"S", S}, {"NH", NH}, {"TP", TP}, {"e", e}, {"drop", drop});
    a.input = P3D_TERM(why, "activations.per_layer.input", "e*T*H/SPd", e * T * H / SPd,
                       "the layer input (all full recompute keeps)", {"e", e}, {"T", T}, {"H", H},
                       {"SPd", SPd});
    a.selective = training.framework.selective;
    if (training.fp8 != Fp8Recipe::kOff && a.selective != SelectiveRecompute::kOpLevel) {
      const double sa = Fp8ActivationScaleBytes(training.fp8), core = a.fused ? 1 + sa : 1 + sa - e;
      a.fp8 = P3D_TERM(why, "activations.per_layer.fp8",
                       "T*((1 + k)*H/SPd*(1 + sa - e) + (k + s)*F/TP*(1 + sa - e) + O_r*core)",
                       T * ((1 + k) * H / SPd * (1 + sa - e) + (k + s) * F / TP * (1 + sa - e) + O_r * core),
                       "FP8 copies of the linear inputs saved instead of bf16 ones", {"T", T}, {"k", k},
                       {"H", H}, {"SPd", SPd}, {"sa", sa}, {"e", e}, {"s", s}, {"F", F}, {"TP", TP},
                       {"O_r", O_r}, {"core", core});
    }
    if (a.selective == SelectiveRecompute::kOpLevel) {
      const double scores = a.scores;
      a.op_level =
          model.arch == Arch::kLlama
              ? P3D_TERM(why, "activations.per_layer.op_level",
                         "scores + e*T*(2*H/SPd + Q_r + O_r + V_r + (k + s)*F/TP)",
                         scores + e * T * (2 * H / SPd + Q_r + O_r + V_r + (k + s) * F / TP),
                         "op-level selective: every second matmul's output, attention output",
                         {"scores", scores}, {"e", e}, {"T", T}, {"H", H}, {"SPd", SPd}, {"Q_r", Q_r},
                         {"O_r", O_r}, {"V_r", V_r}, {"k", k}, {"s", s}, {"F", F}, {"TP", TP})
              : P3D_TERM(why, "activations.per_layer.op_level",
                         "scores + e*T*(H/SPd + Q_r + K_r + V_r + O_r + (k + s)*F/TP)",
                         scores + e * T * (H / SPd + Q_r + K_r + V_r + O_r + (k + s) * F / TP),
                         "op-level selective: every second matmul's output, attention output",
                         {"scores", scores}, {"e", e}, {"T", T}, {"H", H}, {"SPd", SPd}, {"Q_r", Q_r},
                         {"K_r", K_r}, {"V_r", V_r}, {"O_r", O_r}, {"k", k}, {"s", s}, {"F", F},
                         {"TP", TP});
    }
    return a;
  }
  double All() const { return hidden + masks + split + scores + fp8; }
  // Stored per layer per micro-batch between its forward and its backward,
  // and its formula over the groups' names.
  double Stored(Recompute r) const {
    switch (r) {
      case Recompute::kNone:
        return All();
      case Recompute::kSelective:
        if (selective == SelectiveRecompute::kOpLevel) return op_level;
        return fused ? All() : All() - scores;
      case Recompute::kFull:
        return input;
    }
    return All();
  }
  const char* StoredFormula(Recompute r) const {
    if (r == Recompute::kFull) return "input";
    if (r == Recompute::kSelective && selective == SelectiveRecompute::kOpLevel) return "op_level";
    if (r == Recompute::kSelective && !fused) return fp8 != 0 ? "hidden + masks + split + fp8" : "hidden + masks + split";
    return fp8 != 0 ? "hidden + masks + split + scores + fp8" : "hidden + masks + split + scores";
  }
  // Recomputed tensors of one layer alive during its backward, and their formula.
  double RecomputeWorkingSet(Recompute r) const {
    switch (r) {
      case Recompute::kNone:
        return 0;
      case Recompute::kSelective:
        if (selective == SelectiveRecompute::kOpLevel) return All() - op_level;
        return fused ? 0 : scores;
      case Recompute::kFull:
        return All();
    }
    return 0;
  }
  const char* RecomputeWorkingSetFormula(Recompute r) const {
    if (r == Recompute::kFull) return fp8 != 0 ? "hidden + masks + split + scores + fp8" : "hidden + masks + split + scores";
    if (r == Recompute::kSelective && selective == SelectiveRecompute::kOpLevel)
      return "hidden + masks + split + scores - op_level";
    if (r == Recompute::kSelective && !fused) return "scores";
    return "0";
  }
};

// Tokens whose logits exist at once: the micro-batch, or a loss chunk.
inline double LogitTokens(const TrainingSpec& training, const Plan& plan) {
  const double tokens = MicroBatchTokens(plan, training);
  const double chunk = static_cast<double>(training.logits_chunk_tokens);
  return chunk > 0 && chunk < tokens ? chunk : tokens;
}

// Bytes per logit of the fp32 tensors alive at the loss's peak: the fp32
// softmax the vocab-parallel cross-entropy keeps for backward (4), eager
// PyTorch's three (Framework::loss_fp32_tensors); none with a fused
// cross-entropy (Framework::fused_cross_entropy).
inline double LossFp32Bytes(const TrainingSpec& training) {
  return training.framework.fused_cross_entropy ? 0 : 4.0 * training.framework.loss_fp32_tensors;
}

// Last stage, one micro-batch: final-norm input and LM-head input
// (2 x e*B*S*H/SPd), bf16 logits and the fp32 tensors of LossFp32Bytes
// (T_c * V/TP * (e + f32)).
inline double LossBytesPerMicroBatch(const ModelSpec& model, const TrainingSpec& training,
                                     const Plan& plan) {
  const double e = training.precision.activation_bytes;
  const double tokens = MicroBatchTokens(plan, training);
  const double fp32 = LossFp32Bytes(training);
  return 2 * e * tokens * model.hidden / plan.sequence_shards() +
         LogitTokens(training, plan) * static_cast<double>(model.vocab) / plan.tp * (e + fp32);
}

// NCCL communicators a rank of `stage` belongs to: world, TP, DP, PP (CP, DP x CP, replica, EP,
// expert-DP, expert-TP) groups
// where they have more than one member, and Megatron's embedding group (first
// and last stage) when a tied embedding spans a pipeline.
inline int Communicators(const ModelSpec& model, const Plan& plan, int stage) {
  const bool embedding_group =
      model.tie_embeddings && plan.pp > 1 && (stage == 0 || stage == plan.pp - 1);
  // With CP: the CP ring group and the DP x CP gradient group beside the DP
  // group (Megatron's parallel_state builds all three); with hybrid sharding
  // the replica group beside the shard group. With EP > 1 also the EP group
  // and the expert-data-parallel group.
  return (plan.gpus() > 1) + (plan.tp > 1) + (plan.dp > 1) + (plan.pp > 1) + embedding_group +
         2 * (plan.cp > 1) + (plan.zero_shard > 0) + (plan.ep > 1) + (plan.ep > 1 && plan.expert_dp() > 1) +
         (plan.expert_tp() != plan.tp && plan.expert_tp() > 1);
}

}  // namespace p3d::memory_internal
