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

// What one transformer layer holds: a dense FFN or an MoE block, and full
// causal attention or a sliding window (ModelSpec::KindOfLayer).
struct LayerKind {
  bool moe = false;       // routed experts (+ shared experts, router) instead of the dense FFN
  bool windowed = false;  // sliding-window attention of ModelSpec::sliding_window keys
  int index() const { return (moe ? 2 : 0) + (windowed ? 1 : 0); }
  static LayerKind FromIndex(int i) { return {(i & 2) != 0, (i & 1) != 0}; }
};
inline constexpr int kLayerKinds = 4;

// Layers of each LayerKind (by LayerKind::index) in a range of layers.
struct LayerKindCounts {
  int64_t count[kLayerKinds] = {};
  int64_t total() const { return count[0] + count[1] + count[2] + count[3]; }
};

struct ModelSpec {
  std::string name;       // e.g. "llama-2-70b"
  Arch arch = Arch::kLlama;
  int64_t layers = 0;     // L
  int64_t hidden = 0;     // H
  int64_t ffn = 0;        // F: the dense FFN (and each expert's when moe_ffn is 0)
  int64_t heads = 0;      // NH
  int64_t kv_heads = 0;   // KV (== NH without GQA)
  int64_t vocab = 0;      // V
  int64_t max_positions = 0;  // learned position table rows (GPT-2); context length otherwise
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2: biases on q, k, v projections only
  bool alibi = false;           // ALiBi attention biases instead of a position table or rotary (BLOOM)
  bool embedding_norm = false;  // a norm of the arch's kind right after the token embedding (BLOOM)
  int64_t experts = 1;    // MoE: routed experts per MoE layer (1 = dense)
  int64_t experts_per_token = 1;  // MoE: top-k routing
  // --- attention variants (0 / false: the plain GQA attention above) ---
  int64_t head_dim_override = 0;  // HD when it is not H/NH (Qwen3, gpt-oss: config "head_dim")
  bool qk_norm = false;           // Qwen3: RMSNorm over HD on q and on k (HD weights each)
  bool attention_bias = false;    // gpt-oss: biases on q, k, v and o
  bool attention_sinks = false;   // gpt-oss: one learned sink logit per head per layer
  int64_t sliding_window = 0;     // W > 0: windowed layers attend to the last W keys
  int64_t full_attention_every = 0;  // with W: layer i is full iff (i+1) % this == 0 (gpt-oss: 2)
  // MLA (DeepSeek-V2/V3), active when kv_lora_rank > 0: q = up(norm(down_q(x))),
  // [c_kv, k_rope] = down_kv(x), [k_nope, v] = up_kv(norm(c_kv)); heads, no GQA.
  int64_t q_lora_rank = 0;       // 0: q projected directly from H
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;  // shared by all heads (one rope key per token)
  int64_t v_head_dim = 0;
  // --- MoE variants ---
  int64_t moe_ffn = 0;            // each expert's FFN width (0: ffn); DeepSeek/Qwen3 moe_intermediate_size
  int64_t shared_experts = 0;     // experts every token passes through, of width moe_ffn (DeepSeek)
  int64_t dense_layers = 0;       // leading layers with the dense FFN (DeepSeek first_k_dense_replace)
  bool router_bias = false;       // E router parameters beside the H x E weight (gpt-oss bias,
                                  // DeepSeek-V3 e_score_correction_bias)
  bool expert_bias = false;       // gpt-oss: biases on every expert linear
  // Group-limited routing (DeepSeek-V3 n_group / topk_group): the routed experts
  // form expert_groups equal groups and a token's experts_per_token experts come
  // from at most groups_per_token of them (0, 0: no limit).
  int64_t expert_groups = 0;
  int64_t groups_per_token = 0;

  bool moe() const { return experts > 1; }
  bool mla() const { return kv_lora_rank > 0; }
  int64_t head_dim() const { return head_dim_override > 0 ? head_dim_override : hidden / heads; }
  // Per-head widths of the attention core: q.k (MLA: nope + rope) and v.
  int64_t qk_head_dim() const { return mla() ? qk_nope_head_dim + qk_rope_head_dim : head_dim(); }
  int64_t v_dim_per_head() const { return mla() ? v_head_dim : head_dim(); }
  int64_t q_dim() const { return heads * qk_head_dim(); }     // query width NH*HD
  int64_t attn_out_dim() const { return heads * v_dim_per_head(); }  // o-projection input
  int64_t expert_ffn() const { return moe_ffn > 0 ? moe_ffn : ffn; }
  // A learned absolute position table of max_positions rows (GPT-2 without ALiBi).
  bool learned_positions() const { return arch == Arch::kGpt2 && !alibi; }
  int64_t kv_dim() const { return kv_heads * head_dim(); }
  // K (or V) heads on one tensor-parallel rank: ceil(KV/TP), at least one
  // (with TP > KV Megatron replicates a KV head; p3d-plan's rule kv_heads%tp
  // keeps searched plans exact).
  int64_t KvHeadsPerTpRank(int tp) const { return (kv_heads + tp - 1) / tp; }

  // Layer kinds: layer i (0-based) is MoE iff moe() and i >= dense_layers;
  // windowed iff sliding_window > 0 and (i+1) % full_attention_every != 0.
  LayerKind KindOfLayer(int64_t i) const;
  // Layers of each kind among layers [first, first + count).
  LayerKindCounts CountKinds(int64_t first, int64_t count) const;
  int64_t MoeLayers() const { return moe() ? layers - dense_layers : 0; }
  // Keys one query of a layer attends to, counted as the FLOP convention
  // counts them (flops.h): S for full attention, min(W, S) for windowed.
  int64_t AttendedKeys(const LayerKind& kind, int64_t seq) const;

  // Parameter counts (exact, element counts).
  int64_t AttentionParams() const;   // q, k, v, o projections (+ biases, norms, sinks; MLA's)
  int64_t DenseMlpParams() const;    // the dense FFN (width F)
  int64_t ExpertParams() const;      // one routed or shared expert (width expert_ffn())
  int64_t RouterParams() const;      // H x E (+ E bias); 0 for a dense model
  int64_t MoeMlpParams() const;      // routed + shared experts + router
  int64_t MlpParams(const LayerKind& kind) const;
  int64_t NormParamsPerLayer() const;
  int64_t LayerParams(const LayerKind& kind) const;  // attention + MLP + the layer's norms
  int64_t EmbeddingParams() const;   // token embedding (+ learned positions) (+ embedding norm)
  int64_t NormParams() const;        // one norm: LayerNorm weight + bias, RMSNorm weight
  int64_t HeadParams() const;        // untied LM head; 0 when tied
  int64_t FinalNormParams() const;
  int64_t TotalParams() const;
  // Parameters touched per token (MoE: top-k routed + shared experts + router);
  // == TotalParams for dense. Counts the embedding table (a published
  // "active" figure may leave it out: gpt-oss's model card does).
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
// heads divide hidden (unless head_dim is explicit), kv_heads divide heads,
// experts_per_token <= experts, the MoE and MLA fields complete and only set
// where they apply. Messages name the field.
Status Validate(const ModelSpec& model);

}  // namespace p3d
