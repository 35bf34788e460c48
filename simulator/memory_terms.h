// Internal building blocks of the memory model, shared by memory_model.cc
// (numbers) and memory_explain.cc (the same numbers as formulas). Not part of
// the public API: use simulator/memory_model.h.
#pragma once

#include <cstdint>

#include "models/model_spec.h"
#include "common/plan.h"

namespace p3d::memory_internal {

// KVD_r: K (or V) width on one TP rank, ceil(KV/TP) heads of HD (a TP rank
// holds at least one KV head; with TP > KV heads are replicated).
inline double KvDimPerRank(const ModelSpec& model, int tp) {
  const int64_t heads = (model.kv_heads + tp - 1) / tp;
  return static_cast<double>(heads * model.head_dim());
}

// What one transformer layer stores for one micro-batch on one GPU, bytes,
// grouped the way Korthikanti's Table 2 groups them (docs/memory-model.md):
//   hidden  e*B*S*H/SPd x (3 + k): LN1 input, QKV input, LN2 input, MLP input
//           (k routed copies for MoE)             -> Korthikanti's 8sbh
//   masks   drop * 2*B*S*H/SPd: attention-output and MLP-output dropout masks
//                                                 -> 2sbh
//   split   e*B*S*(2H/TP + 2*KVD_r + c*k*F/TP): Q, K, V, output-projection
//           input, MLP intermediates (c = 2 GELU, 3 SwiGLU) -> 24sbh/t
//   scores  unfused core: B*S*S*NH/TP*(e + drop*(1 + e)): softmax output,
//           dropout mask and dropout output      -> 5as^2b/t
//           fused core: 4*B*S*NH/TP, the fp32 row log-sum-exp the backward
//           re-derives the probabilities from (no S x S term; a fused
//           dropout regenerates its mask from the RNG state)
//   input   e*B*S*H/SPd: the layer input (all that full recompute keeps) -> 2sbh
// with e = activation bytes, drop = 1 if dropout else 0, SPd = TP with SP else 1.
// Selective recompute drops the scores of the unfused core and recomputes
// them in backward; with the fused core there is nothing S x S to drop, and
// it stores what none stores (docs/executor.md).
// Selective recompute keeps what the framework's policy saves
// (Framework::selective): "scores" and "core-attention" drop the unfused
// core's scores (the fused core has none to drop); "op-level" (torchtitan)
// keeps the layer input, the outputs of every second matmul (Llama: wq, wv,
// w1, w2 -> q, one KV width, F and the reduce-scattered H/SPd; GPT: qkv and
// fc1), the attention output (q) and the core's own saved tensors (scores).
struct LayerActivations {
  double hidden = 0;
  double masks = 0;
  double split = 0;
  double scores = 0;
  double input = 0;
  double op_level = 0;  // stored under the op-level policy
  bool fused = false;  // Plan::attention == kFused
  SelectiveRecompute selective = SelectiveRecompute::kScores;

  static LayerActivations Of(const ModelSpec& model, const TrainingSpec& training,
                             const Plan& plan) {
    const double e = training.precision.activation_bytes;
    const double tokens = static_cast<double>(plan.micro_batch) * training.seq;  // B*S
    const double sp_div = plan.sequence_parallel && plan.tp > 1 ? plan.tp : 1;
    const double h = static_cast<double>(model.hidden);
    const double k = static_cast<double>(model.experts_per_token);
    const double mlp_mats = model.arch == Arch::kGpt2 ? 2 : 3;
    const double drop = training.dropout ? 1 : 0;
    LayerActivations a;
    a.hidden = e * tokens * h / sp_div * (3 + k);
    a.masks = drop * 2 * tokens * h / sp_div;
    a.split = e * tokens *
              (2 * h / plan.tp + 2 * KvDimPerRank(model, plan.tp) +
               mlp_mats * k * static_cast<double>(model.ffn) / plan.tp);
    a.fused = plan.attention == AttentionImpl::kFused;
    const double heads = static_cast<double>(model.heads) / plan.tp;
    a.scores = a.fused ? tokens * heads * 4 : tokens * training.seq * heads * (e + drop * (1 + e));
    a.input = e * tokens * h / sp_div;
    const double q = h / plan.tp, kvd = KvDimPerRank(model, plan.tp), f = k * static_cast<double>(model.ffn) / plan.tp;
    a.op_level = a.scores + e * tokens *
                                (model.arch == Arch::kLlama ? h / sp_div + q + kvd + q + f + h / sp_div
                                                            : h / sp_div + q + 2 * kvd + q + f);
    a.selective = training.framework.selective;
    return a;
  }
  double All() const { return hidden + masks + split + scores; }
  // Stored per layer per micro-batch between its forward and its backward.
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
  // Recomputed tensors of one layer alive during its backward.
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
};

// Tokens whose logits exist at once: the micro-batch, or a loss chunk.
inline double LogitTokens(const TrainingSpec& training, const Plan& plan) {
  const double tokens = static_cast<double>(plan.micro_batch) * training.seq;
  const double chunk = static_cast<double>(training.logits_chunk_tokens);
  return chunk > 0 && chunk < tokens ? chunk : tokens;
}

// Last stage, one micro-batch: final-norm input and LM-head input
// (2 x e*B*S*H/SPd), bf16 logits and the fp32 softmax the vocab-parallel
// cross-entropy keeps for backward (T_c * V/TP * (e + 4)); a fused
// cross-entropy keeps the bf16 logits only (T_c * V/TP * e).
inline double LossBytesPerMicroBatch(const ModelSpec& model, const TrainingSpec& training,
                                     const Plan& plan) {
  const double e = training.precision.activation_bytes;
  const double tokens = static_cast<double>(plan.micro_batch) * training.seq;
  const double sp_div = plan.sequence_parallel && plan.tp > 1 ? plan.tp : 1;
  const double fp32 = training.framework.fused_cross_entropy ? 0 : 4;  // Framework::fused_cross_entropy
  return 2 * e * tokens * model.hidden / sp_div +
         LogitTokens(training, plan) * static_cast<double>(model.vocab) / plan.tp * (e + fp32);
}

// NCCL communicators a rank of `stage` belongs to: world, TP, DP, PP groups
// where they have more than one member, and Megatron's embedding group (first
// and last stage) when a tied embedding spans a pipeline.
inline int Communicators(const ModelSpec& model, const Plan& plan, int stage) {
  const bool embedding_group =
      model.tie_embeddings && plan.pp > 1 && (stage == 0 || stage == plan.pp - 1);
  return (plan.gpus() > 1) + (plan.tp > 1) + (plan.dp > 1) + (plan.pp > 1) + embedding_group;
}

}  // namespace p3d::memory_internal
