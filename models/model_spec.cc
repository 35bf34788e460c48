#include "models/model_spec.h"

#include <fmt/format.h>

namespace p3d {

const char* ArchName(Arch arch) { return arch == Arch::kGpt2 ? "gpt2" : "llama"; }

int64_t ModelSpec::AttentionParams() const {
  // q: H x H, k and v: H x KV*HD each, o: H x H.
  int64_t weights = hidden * hidden * 2 + hidden * kv_dim() * 2;
  int64_t biases = 0;
  if (arch == Arch::kGpt2) biases = hidden + 2 * kv_dim() + hidden;  // q,k,v,o biases
  else if (qkv_bias) biases = hidden + 2 * kv_dim();
  return weights + biases;
}

int64_t ModelSpec::MlpParams() const {
  int64_t per_expert = 0;
  if (arch == Arch::kGpt2) per_expert = 2 * hidden * ffn + ffn + hidden;  // fc + proj, with biases
  else per_expert = 3 * hidden * ffn;                                    // gate, up, down
  int64_t router = experts > 1 ? hidden * experts : 0;
  return per_expert * experts + router;
}

int64_t ModelSpec::NormParams() const { return arch == Arch::kGpt2 ? 2 * hidden : hidden; }

int64_t ModelSpec::NormParamsPerLayer() const { return 2 * NormParams(); }

int64_t ModelSpec::ParamsPerLayer() const {
  return AttentionParams() + MlpParams() + NormParamsPerLayer();
}

int64_t ModelSpec::EmbeddingParams() const {
  return vocab * hidden + (learned_positions() ? max_positions * hidden : 0) + (embedding_norm ? NormParams() : 0);
}

int64_t ModelSpec::HeadParams() const { return tie_embeddings ? 0 : vocab * hidden; }

int64_t ModelSpec::FinalNormParams() const { return NormParams(); }

int64_t ModelSpec::TotalParams() const {
  return EmbeddingParams() + layers * ParamsPerLayer() + FinalNormParams() + HeadParams();
}

int64_t ModelSpec::ActiveParams() const {
  if (experts <= 1) return TotalParams();
  int64_t per_expert = MlpParams() - hidden * experts;
  per_expert /= experts;
  int64_t inactive = per_expert * (experts - experts_per_token) * layers;
  return TotalParams() - inactive;
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
  // The parameter count in floating point first: the int64 counts must not overflow.
  const double h = static_cast<double>(m.hidden);
  const double approx = static_cast<double>(m.layers) * (4 * h * h + 3 * h * static_cast<double>(m.ffn) *
                                                         static_cast<double>(m.experts)) +
                        2 * h * static_cast<double>(m.vocab + m.max_positions);
  if (approx > kMaxModelParams)
    return Status::InvalidArgument(fmt::format("model: about {:.3g} parameters, over the limit of {:.0e}", approx,
                                               kMaxModelParams));
  if (m.hidden % m.heads != 0)
    return Status::InvalidArgument(fmt::format("model: hidden {} is not divisible by heads {}", m.hidden, m.heads));
  if (m.heads % m.kv_heads != 0)
    return Status::InvalidArgument(fmt::format("model: heads {} is not divisible by kv_heads {}", m.heads, m.kv_heads));
  if (m.experts_per_token > m.experts)
    return Status::InvalidArgument(fmt::format("model: experts_per_token {} exceeds experts {}", m.experts_per_token, m.experts));
  return Status::Ok();
}

}  // namespace p3d
