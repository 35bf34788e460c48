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

int64_t ModelSpec::NormParamsPerLayer() const {
  // Two norms per layer: LayerNorm has weight+bias, RMSNorm weight only.
  return arch == Arch::kGpt2 ? 4 * hidden : 2 * hidden;
}

int64_t ModelSpec::ParamsPerLayer() const {
  return AttentionParams() + MlpParams() + NormParamsPerLayer();
}

int64_t ModelSpec::EmbeddingParams() const {
  int64_t tokens = vocab * hidden;
  return arch == Arch::kGpt2 ? tokens + max_positions * hidden : tokens;
}

int64_t ModelSpec::HeadParams() const { return tie_embeddings ? 0 : vocab * hidden; }

int64_t ModelSpec::FinalNormParams() const { return arch == Arch::kGpt2 ? 2 * hidden : hidden; }

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
  auto positive = [&](const char* field, int64_t v) -> Status {
    if (v <= 0) return Status::InvalidArgument(fmt::format("model field '{}' must be positive, got {}", field, v));
    if (v > (int64_t{1} << 40)) return Status::InvalidArgument(fmt::format("model field '{}' is implausibly large: {}", field, v));
    return Status::Ok();
  };
  P3D_RETURN_IF_ERROR(positive("layers", m.layers));
  P3D_RETURN_IF_ERROR(positive("hidden", m.hidden));
  P3D_RETURN_IF_ERROR(positive("ffn", m.ffn));
  P3D_RETURN_IF_ERROR(positive("heads", m.heads));
  P3D_RETURN_IF_ERROR(positive("kv_heads", m.kv_heads));
  P3D_RETURN_IF_ERROR(positive("vocab", m.vocab));
  P3D_RETURN_IF_ERROR(positive("experts", m.experts));
  P3D_RETURN_IF_ERROR(positive("experts_per_token", m.experts_per_token));
  if (m.arch == Arch::kGpt2) P3D_RETURN_IF_ERROR(positive("max_positions", m.max_positions));
  if (m.hidden % m.heads != 0)
    return Status::InvalidArgument(fmt::format("model: hidden {} is not divisible by heads {}", m.hidden, m.heads));
  if (m.heads % m.kv_heads != 0)
    return Status::InvalidArgument(fmt::format("model: heads {} is not divisible by kv_heads {}", m.heads, m.kv_heads));
  if (m.experts_per_token > m.experts)
    return Status::InvalidArgument(fmt::format("model: experts_per_token {} exceeds experts {}", m.experts_per_token, m.experts));
  return Status::Ok();
}

}  // namespace p3d
