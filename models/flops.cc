#include "models/flops.h"

namespace p3d {

LayerGemmFlops LayerForwardFlopsPerToken(const ModelSpec& m, const LayerKind& kind, int64_t seq) {
  const double h = static_cast<double>(m.hidden);
  const double nh = static_cast<double>(m.heads);
  const double keys = static_cast<double>(m.AttendedKeys(kind, seq));
  LayerGemmFlops out;
  if (m.mla()) {
    // q: H -> q_lora -> NH*(nope + rope) (or H -> NH*(nope + rope)); kv: H ->
    // kv_lora + rope, kv_lora -> NH*(nope + v).
    const double ql = static_cast<double>(m.q_lora_rank), kl = static_cast<double>(m.kv_lora_rank);
    const double q = static_cast<double>(m.q_dim());
    out.qkv = (ql > 0 ? 2.0 * (h * ql + ql * q) : 2.0 * h * q) +
              2.0 * h * (kl + static_cast<double>(m.qk_rope_head_dim)) +
              2.0 * kl * nh * static_cast<double>(m.qk_nope_head_dim + m.v_head_dim);
  } else {
    out.qkv = 2.0 * h * static_cast<double>(m.q_dim() + 2 * m.kv_dim());
  }
  // QK^T and P*V over all NH heads against `keys` keys (no causal halving).
  out.attn_core = 2.0 * keys * nh * static_cast<double>(m.qk_head_dim()) +
                  2.0 * keys * nh * static_cast<double>(m.v_dim_per_head());
  out.out_proj = 2.0 * static_cast<double>(m.attn_out_dim()) * h;
  const double matrices = m.arch == Arch::kGpt2 ? 2.0 : 3.0;  // fc+proj | gate+up+down
  if (kind.moe) {
    const double router = 2.0 * h * static_cast<double>(m.experts);
    const double per_token = static_cast<double>(m.experts_per_token + m.shared_experts);
    out.mlp = matrices * 2.0 * h * static_cast<double>(m.expert_ffn()) * per_token + router;
  } else {
    out.mlp = matrices * 2.0 * h * static_cast<double>(m.ffn);
  }
  return out;
}

double HeadForwardFlopsPerToken(const ModelSpec& m) {
  return 2.0 * static_cast<double>(m.hidden) * static_cast<double>(m.vocab);
}

PassFlops LayerPassFlopsPerToken(const ModelSpec& m, const LayerKind& kind, int64_t seq,
                                 Recompute recompute) {
  const LayerGemmFlops g = LayerForwardFlopsPerToken(m, kind, seq);
  PassFlops p;
  p.forward = g.total();
  p.backward_input = g.total();  // dX for weight GEMMs; dQ,dK + dP,dV (2 x fwd) for the core
  p.backward_input += g.attn_core;
  p.backward_weight = g.weight_gemms();
  switch (recompute) {
    case Recompute::kNone:
      break;
    case Recompute::kSelective:
      p.recompute = g.attn_core;
      break;
    case Recompute::kFull:
      p.recompute = g.total();
      break;
  }
  return p;
}

PassFlops HeadPassFlopsPerToken(const ModelSpec& m) {
  const double f = HeadForwardFlopsPerToken(m);
  PassFlops p;
  p.forward = f;
  p.backward_input = f;
  p.backward_weight = f;
  return p;
}

namespace {
double StepFlops(const ModelSpec& m, int64_t global_batch, int64_t seq, Recompute recompute,
                 bool include_recompute) {
  const LayerKindCounts kinds = m.CountKinds(0, m.layers);
  double per_token = HeadPassFlopsPerToken(m).total();
  for (int k = 0; k < kLayerKinds; ++k) {
    if (kinds.count[k] == 0) continue;
    const PassFlops layer = LayerPassFlopsPerToken(m, LayerKind::FromIndex(k), seq, recompute);
    per_token += static_cast<double>(kinds.count[k]) * (include_recompute ? layer.total() : layer.model());
  }
  return per_token * static_cast<double>(global_batch) * static_cast<double>(seq);
}
}  // namespace

double ModelFlopsPerStep(const ModelSpec& m, int64_t global_batch, int64_t seq) {
  return StepFlops(m, global_batch, seq, Recompute::kNone, false);
}

double HardwareFlopsPerStep(const ModelSpec& m, const TrainingSpec& t, Recompute recompute) {
  return StepFlops(m, t.global_batch, t.seq, recompute, true);
}

}  // namespace p3d
