#include "models/model_spec.h"

#include <fmt/format.h>

#include <algorithm>

namespace p3d {

const char* ArchName(Arch arch) { return arch == Arch::kGpt2 ? "gpt2" : "llama"; }

LayerKind ModelSpec::KindOfLayer(int64_t i) const {
  LayerKind k;
  k.moe = moe() && i >= dense_layers;
  k.windowed = sliding_window > 0 && (full_attention_every <= 0 || (i + 1) % full_attention_every != 0);
  return k;
}

LayerKindCounts ModelSpec::CountKinds(int64_t first, int64_t count) const {
  LayerKindCounts c;
  // Layers [x, y) of one FFN kind, split into full and windowed attention:
  // layer i is full iff i + 1 is a multiple of p, so [x, y) holds y/p - x/p full layers.
  auto add = [&](int64_t x, int64_t y, bool moe_part) {
    if (y <= x) return;
    int64_t windowed = 0;
    if (sliding_window > 0)
      windowed = full_attention_every > 0 ? (y - x) - (y / full_attention_every - x / full_attention_every) : y - x;
    c.count[LayerKind{moe_part, false}.index()] += (y - x) - windowed;
    c.count[LayerKind{moe_part, true}.index()] += windowed;
  };
  const int64_t end = first + count, split = moe() ? std::clamp(dense_layers, first, end) : end;
  add(first, split, false);
  add(split, end, true);
  return c;
}

int64_t ModelSpec::AttendedKeys(const LayerKind& kind, int64_t seq) const {
  return kind.windowed ? std::min(sliding_window, seq) : seq;
}

int64_t ModelSpec::AttentionParams() const {
  if (mla()) {
    // q: H x q_lora (+ its RMSNorm) then q_lora x NH*(nope + rope), or H x NH*(nope + rope);
    // kv: H x (kv_lora + rope) (+ RMSNorm of kv_lora) then kv_lora x NH*(nope + v); o: NH*v x H.
    const int64_t q = q_lora_rank > 0 ? hidden * q_lora_rank + q_lora_rank + q_lora_rank * q_dim()
                                      : hidden * q_dim();
    const int64_t kv = hidden * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank +
                       kv_lora_rank * heads * (qk_nope_head_dim + v_head_dim);
    return q + kv + attn_out_dim() * hidden + (attention_sinks ? heads : 0);
  }
  // q: H x NH*HD, k and v: H x KV*HD each, o: NH*HD x H.
  int64_t weights = hidden * q_dim() * 2 + hidden * kv_dim() * 2;
  int64_t biases = 0;
  if (arch == Arch::kGpt2 || attention_bias) biases = q_dim() + 2 * kv_dim() + hidden;  // q,k,v,o biases
  else if (qkv_bias) biases = q_dim() + 2 * kv_dim();
  const int64_t norms = qk_norm ? 2 * head_dim() : 0;
  return weights + biases + norms + (attention_sinks ? heads : 0);
}

namespace {
// One FFN of width f: GPT-2 fc + proj with biases; Llama gate, up, down
// (+ their biases with `bias`).
int64_t FfnParams(const ModelSpec& m, int64_t f, bool bias) {
  if (m.arch == Arch::kGpt2) return 2 * m.hidden * f + f + m.hidden;
  return 3 * m.hidden * f + (bias ? 2 * f + m.hidden : 0);
}

// Group-limited routing: both fields or neither; equal groups; the allowed
// groups hold at least experts_per_token experts.
Status CheckExpertGroups(const ModelSpec& m) {
  if ((m.expert_groups > 0) != (m.groups_per_token > 0))
    return Status::InvalidArgument(fmt::format(
        "model fields 'expert_groups' ({}) and 'groups_per_token' ({}) are set together or not at all",
        m.expert_groups, m.groups_per_token));
  if (m.expert_groups == 0) return Status::Ok();
  if (m.experts % m.expert_groups != 0)
    return Status::InvalidArgument(fmt::format("model: experts {} do not split into expert_groups {} equal groups",
                                               m.experts, m.expert_groups));
  if (m.groups_per_token > m.expert_groups ||
      m.groups_per_token * (m.experts / m.expert_groups) < m.experts_per_token)
    return Status::InvalidArgument(fmt::format(
        "model: groups_per_token {} must be at most expert_groups {} and its groups must hold experts_per_token {} "
        "experts ({} per group)",
        m.groups_per_token, m.expert_groups, m.experts_per_token, m.experts / m.expert_groups));
  return Status::Ok();
}
}  // namespace

int64_t ModelSpec::DenseMlpParams() const { return FfnParams(*this, ffn, false); }

int64_t ModelSpec::ExpertParams() const { return FfnParams(*this, expert_ffn(), expert_bias); }

int64_t ModelSpec::RouterParams() const {
  return moe() ? hidden * experts + (router_bias ? experts : 0) : 0;
}

int64_t ModelSpec::MoeMlpParams() const {
  return (experts + shared_experts) * ExpertParams() + RouterParams();
}

int64_t ModelSpec::MlpParams(const LayerKind& kind) const {
  return kind.moe ? MoeMlpParams() : DenseMlpParams();
}

int64_t ModelSpec::NormParams() const { return arch == Arch::kGpt2 ? 2 * hidden : hidden; }

int64_t ModelSpec::NormParamsPerLayer() const { return 2 * NormParams(); }

int64_t ModelSpec::LayerParams(const LayerKind& kind) const {
  return AttentionParams() + MlpParams(kind) + NormParamsPerLayer();
}

int64_t ModelSpec::EmbeddingParams() const {
  return vocab * hidden + (learned_positions() ? max_positions * hidden : 0) + (embedding_norm ? NormParams() : 0);
}

int64_t ModelSpec::HeadParams() const { return tie_embeddings ? 0 : vocab * hidden; }

int64_t ModelSpec::FinalNormParams() const { return NormParams(); }

int64_t ModelSpec::TotalParams() const {
  const LayerKindCounts c = CountKinds(0, layers);
  int64_t total = EmbeddingParams() + FinalNormParams() + HeadParams();
  for (int k = 0; k < kLayerKinds; ++k) total += c.count[k] * LayerParams(LayerKind::FromIndex(k));
  return total;
}

int64_t ModelSpec::ActiveParams() const {
  return TotalParams() - MoeLayers() * (experts - experts_per_token) * ExpertParams();
}

Status Validate(const ModelSpec& m) {
  // Documented limits (docs/models.md): far above any published model, low
  // enough that every count below fits int64 and the search stays bounded.
  auto in_range = [&](const char* field, int64_t v, int64_t max) -> Status {
    if (v <= 0) return Status::InvalidArgument(fmt::format("model field '{}' must be positive, got {}", field, v));
    if (v > max)
      return Status::InvalidArgument(fmt::format("model field '{}' is {}, over the limit of {}", field, v, max));
    return Status::Ok();
  };
  P3D_RETURN_IF_ERROR(in_range("layers", m.layers, kMaxModelLayers));
  P3D_RETURN_IF_ERROR(in_range("hidden", m.hidden, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(in_range("ffn", m.ffn, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(in_range("heads", m.heads, kMaxModelHeads));
  P3D_RETURN_IF_ERROR(in_range("kv_heads", m.kv_heads, kMaxModelHeads));
  P3D_RETURN_IF_ERROR(in_range("vocab", m.vocab, kMaxModelVocab));
  P3D_RETURN_IF_ERROR(in_range("experts", m.experts, kMaxModelExperts));
  P3D_RETURN_IF_ERROR(in_range("experts_per_token", m.experts_per_token, kMaxModelExperts));
  if (m.learned_positions()) P3D_RETURN_IF_ERROR(in_range("max_positions", m.max_positions, kMaxModelPositions));
  auto non_negative = [&](const char* field, int64_t v, int64_t max) -> Status {
    if (v < 0) return Status::InvalidArgument(fmt::format("model field '{}' must be >= 0, got {}", field, v));
    if (v > max)
      return Status::InvalidArgument(fmt::format("model field '{}' is {}, over the limit of {}", field, v, max));
    return Status::Ok();
  };
  P3D_RETURN_IF_ERROR(non_negative("head_dim", m.head_dim_override, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("sliding_window", m.sliding_window, kMaxModelPositions));
  P3D_RETURN_IF_ERROR(non_negative("full_attention_every", m.full_attention_every, kMaxModelLayers));
  P3D_RETURN_IF_ERROR(non_negative("q_lora_rank", m.q_lora_rank, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("kv_lora_rank", m.kv_lora_rank, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("qk_nope_head_dim", m.qk_nope_head_dim, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("qk_rope_head_dim", m.qk_rope_head_dim, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("v_head_dim", m.v_head_dim, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("moe_ffn", m.moe_ffn, kMaxModelWidth));
  P3D_RETURN_IF_ERROR(non_negative("shared_experts", m.shared_experts, kMaxModelExperts));
  P3D_RETURN_IF_ERROR(non_negative("dense_layers", m.dense_layers, kMaxModelLayers));
  P3D_RETURN_IF_ERROR(non_negative("expert_groups", m.expert_groups, kMaxModelExperts));
  P3D_RETURN_IF_ERROR(non_negative("groups_per_token", m.groups_per_token, kMaxModelExperts));
  if (!m.moe()) {
    const std::pair<const char*, bool> moe_only[] = {
        {"moe_ffn", m.moe_ffn > 0}, {"shared_experts", m.shared_experts > 0},
        {"dense_layers", m.dense_layers > 0}, {"router_bias", m.router_bias}, {"expert_bias", m.expert_bias},
        {"expert_groups", m.expert_groups > 0}};
    for (const auto& [field, set] : moe_only)
      if (set)
        return Status::InvalidArgument(
            fmt::format("model field '{}' applies to MoE models only (experts > 1), experts is {}", field, m.experts));
  }
  if (m.dense_layers >= m.layers)
    return Status::InvalidArgument(fmt::format(
        "model field 'dense_layers' is {} but the model has {} layers: an MoE model needs at least one MoE layer",
        m.dense_layers, m.layers));
  if (m.full_attention_every > 0 && m.sliding_window == 0)
    return Status::InvalidArgument("model field 'full_attention_every' needs 'sliding_window' > 0");
  if (m.mla()) {
    for (const auto& [field, v] : {std::pair<const char*, int64_t>{"qk_nope_head_dim", m.qk_nope_head_dim},
                                   {"qk_rope_head_dim", m.qk_rope_head_dim}, {"v_head_dim", m.v_head_dim}})
      if (v <= 0)
        return Status::InvalidArgument(fmt::format("model: MLA (kv_lora_rank {}) needs '{}' > 0", m.kv_lora_rank, field));
    if (m.kv_heads != m.heads)
      return Status::InvalidArgument(fmt::format(
          "model: MLA gives every head its own k and v: kv_heads {} must equal heads {}", m.kv_heads, m.heads));
    if (m.qkv_bias || m.attention_bias || m.qk_norm || m.head_dim_override > 0)
      return Status::InvalidArgument(
          "model: MLA attention takes no qkv_bias, attention_bias, qk_norm or head_dim (its widths are the MLA fields)");
  } else if (m.q_lora_rank > 0 || m.qk_nope_head_dim > 0 || m.qk_rope_head_dim > 0 || m.v_head_dim > 0) {
    return Status::InvalidArgument("model: q_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim "
                                   "are MLA fields: they need kv_lora_rank > 0");
  }
  // The parameter count in floating point first: the int64 counts must not overflow.
  const double h = static_cast<double>(m.hidden);
  const double wide = static_cast<double>(std::max({m.ffn, m.moe_ffn, m.hidden}));
  const double attn = 4 * h * static_cast<double>(std::max({m.hidden, m.heads * m.head_dim_override,
                                                             m.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim +
                                                                        m.v_head_dim)}));
  const double approx =
      static_cast<double>(m.layers) *
          (attn + 3 * h * wide * static_cast<double>(m.experts + m.shared_experts + 1)) +
      2 * h * static_cast<double>(m.vocab + m.max_positions);
  if (approx > kMaxModelParams)
    return Status::InvalidArgument(fmt::format("model: about {:.3g} parameters, over the limit of {:.0e}", approx,
                                               kMaxModelParams));
  if (m.head_dim_override == 0 && !m.mla() && m.hidden % m.heads != 0)
    return Status::InvalidArgument(fmt::format("model: hidden {} is not divisible by heads {}", m.hidden, m.heads));
  if (m.heads % m.kv_heads != 0)
    return Status::InvalidArgument(fmt::format("model: heads {} is not divisible by kv_heads {}", m.heads, m.kv_heads));
  if (m.experts_per_token > m.experts)
    return Status::InvalidArgument(fmt::format("model: experts_per_token {} exceeds experts {}", m.experts_per_token, m.experts));
  return CheckExpertGroups(m);
}

}  // namespace p3d
