#include "models/flops.h"

namespace p3d {

LayerGemmFlops LayerForwardFlopsPerToken(const ModelSpec& m, int64_t seq) {
  const double h = static_cast<double>(m.hidden);
  const double kv = static_cast<double>(m.kv_dim());
  const double f = static_cast<double>(m.ffn);
  const double s = static_cast<double>(seq);
  LayerGemmFlops out;
  out.qkv = 2.0 * h * (h + 2.0 * kv);
  out.attn_core = 2.0 * s * h + 2.0 * s * h;  // QK^T and P*V over all NH heads, full S x S
  out.out_proj = 2.0 * h * h;
  const double matrices = m.arch == Arch::kGpt2 ? 2.0 : 3.0;  // fc+proj | gate+up+down
  const double router = m.experts > 1 ? 2.0 * h * static_cast<double>(m.experts) : 0.0;
  out.mlp = matrices * 2.0 * h * f * static_cast<double>(m.experts_per_token) + router;
  return out;
}

double HeadForwardFlopsPerToken(const ModelSpec& m) {
  return 2.0 * static_cast<double>(m.hidden) * static_cast<double>(m.vocab);
}

PassFlops LayerPassFlopsPerToken(const ModelSpec& m, int64_t seq, Recompute recompute) {
  const LayerGemmFlops g = LayerForwardFlopsPerToken(m, seq);
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
  const PassFlops layer = LayerPassFlopsPerToken(m, seq, recompute);
  const PassFlops head = HeadPassFlopsPerToken(m);
  const double per_token =
      static_cast<double>(m.layers) * (include_recompute ? layer.total() : layer.model()) +
      head.total();
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
