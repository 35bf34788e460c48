#include "executor/memory_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/enum_names.h"
#include "executor/kernels/column_reduce.h"
#include "executor/kernels/optimizer.h"

namespace p3d {
namespace {

constexpr int64_t kBf16 = 2, kF32 = 4, kI32 = 4;

// T: tokens of the micro-batch; Tl: tokens of the residual stream on this
// rank (T / TP with sequence parallelism, else T).
struct Dims {
  int64_t T, Tl, B, S, H, Eq, Ekv, Q3, F, mlp_pre_cols, scores, lse;
  bool layernorm, fused;
};

Dims MakeDims(const ModelSpec& m, const LocalShape& s, const TrainingShape& t) {
  Dims d;
  d.B = t.micro_batch;
  d.S = t.seq;
  d.T = d.B * d.S;
  d.Tl = d.T / std::max<int64_t>(1, t.sequence_shards);
  d.H = s.hidden;
  d.Eq = s.q_dim();
  d.Ekv = s.kv_dim();
  d.Q3 = s.qkv_dim();
  d.F = s.ffn;
  d.mlp_pre_cols = m.arch == Arch::kGpt2 ? s.ffn : 2 * s.ffn;
  d.fused = t.attention == AttentionImpl::kFused;
  d.scores = d.fused ? 0 : d.B * s.heads * d.S * d.S;
  d.lse = d.fused ? d.B * s.heads * d.S : 0;
  d.layernorm = m.arch == Arch::kGpt2;
  return d;
}

// Adds one layer's activation set (all but x_in) under `term`; `with_probs`
// adds probs too (else probs is left for the caller).
void AddLayerSet(ArenaPlan& a, const Dims& d, const std::string& pre, RegionTerm term,
                 bool with_probs, LayerActivationOffsets* o) {
  o->norm1_out = a.Add(pre + "norm1_out", term, d.Tl * d.H * kBf16);
  o->norm1_mean = a.Add(pre + "norm1_mean", term, d.layernorm ? d.Tl * kF32 : 0);
  o->norm1_rstd = a.Add(pre + "norm1_rstd", term, d.Tl * kF32);
  if (d.fused) {
    o->qkv = a.Add(pre + "qkv", term, d.T * d.Q3 * kBf16);
    o->lse = a.Add(pre + "lse (fp32)", term, d.lse * kF32);
  } else {
    o->q = a.Add(pre + "q", term, d.T * d.Eq * kBf16);
    o->k = a.Add(pre + "k", term, d.T * d.Ekv * kBf16);
    o->v = a.Add(pre + "v", term, d.T * d.Ekv * kBf16);
    if (with_probs) o->probs = a.Add(pre + "probs", term, d.scores * kBf16);
  }
  o->att_out = a.Add(pre + "att_out", term, d.T * d.Eq * kBf16);
  o->x_mid = a.Add(pre + "x_mid", term, d.Tl * d.H * kBf16);
  o->norm2_out = a.Add(pre + "norm2_out", term, d.Tl * d.H * kBf16);
  o->norm2_mean = a.Add(pre + "norm2_mean", term, d.layernorm ? d.Tl * kF32 : 0);
  o->norm2_rstd = a.Add(pre + "norm2_rstd", term, d.Tl * kF32);
  o->mlp_pre = a.Add(pre + "mlp_pre", term, d.T * d.mlp_pre_cols * kBf16);
  o->mlp_act = a.Add(pre + "mlp_act", term, d.T * d.F * kBf16);
}

}  // namespace

constexpr EnumEntry<RegionTerm> kRegionTermNames[] = {{RegionTerm::kWeights, "weights"},
                                                      {RegionTerm::kGradients, "gradients"},
                                                      {RegionTerm::kOptimizer, "optimizer"},
                                                      {RegionTerm::kActivations, "activations"},
                                                      {RegionTerm::kBuffers, "buffers"}};

const char* RegionTermName(RegionTerm term) { return EnumName(kRegionTermNames, term); }

int64_t ArenaPlan::Add(std::string name, RegionTerm term, int64_t bytes) {
  ArenaRegion r{std::move(name), term, total_, bytes};
  const int64_t padded = (bytes + kArenaAlignBytes - 1) / kArenaAlignBytes * kArenaAlignBytes;
  total_ += padded;
  regions_.push_back(std::move(r));
  padded_.push_back(padded);
  return regions_.back().offset;
}

int64_t ArenaPlan::TermBytes(RegionTerm term) const {
  int64_t sum = 0;
  for (size_t i = 0; i < regions_.size(); ++i)
    if (regions_[i].term == term) sum += padded_[i];
  return sum;
}

int64_t LayerActivationBytes(const ModelSpec& m, const LocalShape& s, const TrainingShape& t) {
  const Dims d = MakeDims(m, s, t);
  const int64_t x_in = d.Tl * d.H * kBf16;
  if (t.recompute == Recompute::kFull) return x_in;
  const int64_t stats = d.Tl * kF32 * (d.layernorm ? 4 : 2);
  int64_t bytes =
      x_in + stats + kBf16 * d.Tl * 3 * d.H /*norm1_out, x_mid, norm2_out*/ +
      kBf16 * d.T *
          (d.Eq /*q*/ + 2 * d.Ekv /*k,v*/ + d.Eq /*att_out*/ + d.mlp_pre_cols + d.F /*mlp_act*/);
  // Fused: the same q, k, v bytes as one qkv tensor, plus the fp32 lse (also
  // under selective); unfused: the bf16 probabilities under none only.
  if (t.recompute == Recompute::kNone) bytes += d.scores * kBf16;
  return bytes + d.lse * kF32;
}

StatusOr<TrainingMemoryPlan> PlanTrainingMemory(const ModelSpec& m, const LocalShape& s,
                                                const ParamLayout& params, const TrainingShape& t,
                                                int64_t workspace_bytes,
                                                const ParamStateSizes& states) {
  if (t.micro_batch < 1 || t.seq < 1)
    return Status::InvalidArgument(
        fmt::format("micro_batch = {} and seq = {} must be positive", t.micro_batch, t.seq));
  auto multiple8 = [](const char* rule, int64_t v) -> Status {
    if (v % 8 != 0)
      return Status::InvalidArgument(fmt::format(
          "rule {} % 8: {} = {} must be a multiple of 8 (16-byte vector width of the kernels)",
          rule, rule, v));
    return Status::Ok();
  };
  P3D_RETURN_IF_ERROR(multiple8("seq", t.seq));
  P3D_RETURN_IF_ERROR(multiple8("hidden", s.hidden));
  P3D_RETURN_IF_ERROR(multiple8("head_dim", s.head_dim));
  P3D_RETURN_IF_ERROR(multiple8("ffn", s.ffn));
  if (m.learned_positions() && t.seq > m.max_positions)
    return Status::InvalidArgument(
        fmt::format("seq = {} exceeds the model's {} learned positions (max_positions)", t.seq,
                    m.max_positions));
  if (t.logits_chunk < 0) return Status::InvalidArgument("logits_chunk must be >= 0 (0 = default)");
  const int64_t blocks =
      t.attention_blocks > 0 ? t.attention_blocks : DefaultAttentionBlocks(t.seq);
  if (t.attention_blocks < 0 || t.seq % blocks != 0 || (t.seq / blocks) % 8 != 0)
    return Status::InvalidArgument(
        fmt::format("rule attention blocks: {} causal blocks must cut seq = {} into multiples of 8",
                    t.attention_blocks, t.seq));

  if (t.sequence_shards < 1 || (t.micro_batch * t.seq) % t.sequence_shards != 0)
    return Status::InvalidArgument(fmt::format(
        "rule tokens % tp: sequence parallelism splits the B*S = {} tokens of a micro-batch into "
        "{} equal slices",
        t.micro_batch * t.seq, t.sequence_shards));
  const Dims d = MakeDims(m, s, t);
  TrainingMemoryPlan p;
  p.attention_blocks = blocks;
  ArenaPlan& a = p.arena;
  const int64_t n = params.total;
  const int64_t opt = states.optimizer_elements >= 0 ? states.optimizer_elements : n;
  const int64_t w = states.weight_elements >= 0 ? states.weight_elements : n;
  p.weights = a.Add("weights (bf16)", RegionTerm::kWeights, w * kBf16);
  const bool staged = states.grad_staging_elements > 0;
  p.grads = a.Add("gradients (fp32)", RegionTerm::kGradients, staged ? 0 : n * kF32);
  p.grad_shard =
      a.Add("gradient shard (fp32)", RegionTerm::kGradients, states.grad_shard_elements * kF32);
  p.grad_staging =
      a.Add("gradient staging (fp32)", RegionTerm::kBuffers, states.grad_staging_elements * kF32);
  p.zero3_gather =
      a.Add("ZeRO-3 gather (bf16)", RegionTerm::kBuffers, states.gather_elements * kBf16);
  p.master = a.Add("master weights (fp32)", RegionTerm::kOptimizer, opt * kF32);
  p.adam_m = a.Add("adam m (fp32)", RegionTerm::kOptimizer, opt * kF32);
  p.adam_v = a.Add("adam v (fp32)", RegionTerm::kOptimizer, opt * kF32);

  if (t.activation_slots < 1 || t.chunks < 1 || s.layers % t.chunks != 0)
    return Status::InvalidArgument(
        fmt::format("rule pipeline slots: {} activation slots, {} chunks of {} layers",
                    t.activation_slots, t.chunks, s.layers));
  // Stored activations: one chunk's layers per activation slot.
  const int64_t slots = t.activation_slots;
  const int64_t chunk_layers = s.layers / t.chunks;
  p.layers.resize(slots * chunk_layers);
  for (int64_t k = 0; k < slots * chunk_layers; ++k) {
    const int64_t l = k % chunk_layers;
    const std::string pre = slots > 1 ? fmt::format("slot {} layer {} ", k / chunk_layers, l)
                                      : fmt::format("layer {} ", l);
    LayerActivationOffsets& o = p.layers[k];
    o.x_in = a.Add(pre + "x_in", RegionTerm::kActivations, d.Tl * d.H * kBf16);
    if (t.recompute != Recompute::kFull)
      AddLayerSet(a, d, pre, RegionTerm::kActivations, t.recompute == Recompute::kNone, &o);
  }
  p.x_final = a.Add("x_final", RegionTerm::kActivations, d.Tl * d.H * kBf16);
  p.chunk_output.push_back(p.x_final);
  for (int64_t k = 1; k < slots; ++k)
    p.chunk_output.push_back(
        a.Add(fmt::format("chunk output {}", k), RegionTerm::kActivations, d.Tl * d.H * kBf16));
  p.grad_output =
      a.Add("received d chunk output", RegionTerm::kBuffers, t.pipelined ? d.Tl * d.H * kBf16 : 0);
  p.final_norm_out = a.Add("final_norm_out", RegionTerm::kActivations, d.Tl * d.H * kBf16);
  p.final_mean = a.Add("final_mean", RegionTerm::kActivations, d.layernorm ? d.Tl * kF32 : 0);
  p.final_rstd = a.Add("final_rstd", RegionTerm::kActivations, d.Tl * kF32);

  // Loss chunk (activations: the simulator counts logits/loss temporaries there).
  const int64_t vocab = s.vocab;
  p.logits_ld = PaddedVocab(vocab);
  p.logits_chunk = std::min(d.T, t.logits_chunk > 0 ? t.logits_chunk : kDefaultLogitsChunk);
  p.logits =
      a.Add("logits chunk (fp32)", RegionTerm::kActivations, p.logits_chunk * p.logits_ld * kF32);
  p.dlogits =
      a.Add("dlogits chunk (bf16)", RegionTerm::kActivations, p.logits_chunk * p.logits_ld * kBf16);
  p.losses = a.Add("token losses (fp32)", RegionTerm::kActivations, d.T * kF32);
  p.loss_stats = a.Add("vocab-parallel loss statistics", RegionTerm::kBuffers,
                       t.vocab_parallel ? 3 * p.logits_chunk * kF32 : 0);

  // One layer's transient set: recompute target (full) / score scratch (selective, full).
  if (t.recompute == Recompute::kFull) {
    LayerActivationOffsets work;
    AddLayerSet(a, d, "recompute ", RegionTerm::kBuffers, true, &work);
    for (auto& o : p.layers) {
      const int64_t x_in = o.x_in;
      o = work;
      o.x_in = x_in;
    }
  } else if (t.recompute == Recompute::kSelective && !d.fused) {
    const int64_t probs = a.Add("probs scratch", RegionTerm::kBuffers, d.scores * kBf16);
    for (auto& o : p.layers) o.probs = probs;
  }
  p.qkv_tokens = a.Add("qkv tokens / dqkv", RegionTerm::kBuffers, d.T * d.Q3 * kBf16);
  p.o_heads =
      a.Add("attention out heads / d", RegionTerm::kBuffers, d.fused ? 0 : d.T * d.Eq * kBf16);
  p.branch =
      a.Add("branch out / d norm out", RegionTerm::kBuffers, d.T * std::max(d.H, d.Eq) * kBf16);
  p.dres = a.Add("d residual", RegionTerm::kBuffers, d.Tl * d.H * kBf16);
  p.sp_gather = a.Add("sequence-parallel all-gather", RegionTerm::kBuffers,
                      t.sequence_shards > 1 ? d.T * d.H * kBf16 : 0);
  p.dmlp_act = a.Add("d mlp_act", RegionTerm::kBuffers, d.T * d.F * kBf16);
  p.dmlp_pre = a.Add("d mlp_pre", RegionTerm::kBuffers, d.T * d.mlp_pre_cols * kBf16);
  p.dqkv_heads = a.Add("dq dk dv heads", RegionTerm::kBuffers, d.fused ? 0 : d.T * d.Q3 * kBf16);
  p.dprobs = a.Add("d probs", RegionTerm::kBuffers, d.scores * kBf16);
  p.attention_workspace =
      a.Add("fused attention workspace", RegionTerm::kBuffers, d.fused ? t.attention_workspace : 0);
  p.scalars = a.Add("scalars", RegionTerm::kBuffers, 4 * kF32);
  p.norm_partials = a.Add("grad-norm partials (fp64)", RegionTerm::kBuffers, kGradNormBlocks * 8);
  const int64_t widest = std::max({d.H, d.Q3, d.F});
  p.column_partials =
      a.Add("column partials", RegionTerm::kBuffers, 2 * ColumnPartialsFloats(widest) * kF32);
  p.tokens = a.Add("tokens", RegionTerm::kBuffers, d.T * kI32);
  p.targets = a.Add("targets", RegionTerm::kBuffers, d.T * kI32);
  p.bucket_token = a.Add("embedding buckets", RegionTerm::kBuffers, d.T * kI32);
  p.bucket_offset = a.Add("embedding bucket offsets", RegionTerm::kBuffers, (d.T + 1) * kI32);
  p.positions = a.Add("embedding bucket positions", RegionTerm::kBuffers, d.T * kI32);
  const bool rotary = m.arch == Arch::kLlama;
  p.rope_cos = a.Add("rotary cos", RegionTerm::kBuffers, rotary ? d.S * s.head_dim / 2 * kF32 : 0);
  p.rope_sin = a.Add("rotary sin", RegionTerm::kBuffers, rotary ? d.S * s.head_dim / 2 * kF32 : 0);
  p.workspace = a.Add("cuBLASLt workspace", RegionTerm::kBuffers, workspace_bytes);
  return p;
}

}  // namespace p3d
