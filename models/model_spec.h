// ModelSpec: the shape of a decoder-only transformer, shared by the planner,
// the simulator and the executor (one model definition serves all three).
//
// Vocabulary used in shape comments across p3d:
//   B  micro-batch size        S  sequence length      H  hidden size
//   NH attention heads         KV key/value heads      HD head dim (H / NH)
//   F  FFN (intermediate) size V  vocabulary size      L  layers
//   TP, PP, DP: tensor, pipeline, data parallel degrees.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace p3d {

// GPT-2 style: LayerNorm (weight+bias), GELU MLP with two matrices, biases on
//   every linear, learned absolute positions, LM head tied to the embedding.
// Llama style: RMSNorm (weight only), SwiGLU MLP with three matrices, no
//   biases (Qwen2: q/k/v biases), rotary positions, grouped-query attention,
//   untied LM head (tie_embeddings may override).
// ALiBi (BLOOM) replaces either arch's position encoding by fixed attention
// biases: no position parameters.
enum class Arch { kGpt2, kLlama };

const char* ArchName(Arch arch);

struct ModelSpec {
  std::string name;       // e.g. "llama-2-70b"
  Arch arch = Arch::kLlama;
  int64_t layers = 0;     // L
  int64_t hidden = 0;     // H
  int64_t ffn = 0;        // F (per expert for MoE)
  int64_t heads = 0;      // NH
  int64_t kv_heads = 0;   // KV (== NH without GQA)
  int64_t vocab = 0;      // V
  int64_t max_positions = 0;  // learned position table rows (GPT-2); context length otherwise
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2: biases on q, k, v projections only
  bool alibi = false;           // ALiBi attention biases instead of a position table or rotary (BLOOM)
  bool embedding_norm = false;  // a norm of the arch's kind right after the token embedding (BLOOM)
  int64_t experts = 1;    // MoE: experts per layer (1 = dense)
  int64_t experts_per_token = 1;  // MoE: top-k routing

  int64_t head_dim() const { return hidden / heads; }
  // A learned absolute position table of max_positions rows (GPT-2 without ALiBi).
  bool learned_positions() const { return arch == Arch::kGpt2 && !alibi; }
  int64_t kv_dim() const { return kv_heads * head_dim(); }
  // K (or V) heads on one tensor-parallel rank: ceil(KV/TP), at least one
  // (with TP > KV Megatron replicates a KV head; p3d-plan's rule kv_heads%tp
  // keeps searched plans exact).
  int64_t KvHeadsPerTpRank(int tp) const { return (kv_heads + tp - 1) / tp; }

  // Parameter counts (exact, element counts).
  int64_t AttentionParams() const;   // q, k, v, o projections (+ biases)
  int64_t MlpParams() const;         // all experts' MLPs + router
  int64_t NormParamsPerLayer() const;
  int64_t ParamsPerLayer() const;    // attention + MLP + the layer's norms
  int64_t EmbeddingParams() const;   // token embedding (+ learned positions) (+ embedding norm)
  int64_t NormParams() const;        // one norm: LayerNorm weight + bias, RMSNorm weight
  int64_t HeadParams() const;        // untied LM head; 0 when tied
  int64_t FinalNormParams() const;
  int64_t TotalParams() const;
  // Parameters touched per token (MoE: top-k experts only); == TotalParams for dense.
  int64_t ActiveParams() const;
};

// Limits every model must respect (docs/models.md): far above any published
// model; they keep every count in int64 and every search bounded.
inline constexpr int64_t kMaxModelLayers = 16384;
inline constexpr int64_t kMaxModelWidth = int64_t{1} << 20;      // hidden, ffn
inline constexpr int64_t kMaxModelHeads = 65536;
inline constexpr int64_t kMaxModelVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxModelPositions = int64_t{1} << 24;
inline constexpr int64_t kMaxModelExperts = 65536;
inline constexpr double kMaxModelParams = 1e15;

// Checks internal consistency: sizes positive and within the limits above,
// heads divide hidden, kv_heads divide heads, experts_per_token <= experts.
// Messages name the field.
Status Validate(const ModelSpec& model);

}  // namespace p3d
