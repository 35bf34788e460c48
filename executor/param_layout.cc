#include "executor/param_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace p3d {
namespace {

constexpr float kInitStd = 0.02f;

class Builder {
 public:
  explicit Builder(ParamLayout* layout) : layout_(layout) {}
  int64_t Add(std::string name, int64_t rows, int64_t cols, ParamInit init, float stddev = 0.0f,
              int64_t storage_rows = 0) {
    ParamTensor t;
    t.name = std::move(name);
    t.rows = rows;
    t.cols = cols;
    t.storage_rows = std::max(rows, storage_rows);
    t.offset = layout_->total;
    t.init = init;
    t.stddev = stddev;
    t.decay = cols != 0;
    const int64_t stored = cols == 0 ? t.storage_rows : t.storage_rows * cols;
    layout_->total +=
        (stored + kParamAlignElements - 1) / kParamAlignElements * kParamAlignElements;
    layout_->tensors.push_back(std::move(t));
    return layout_->tensors.back().offset;
  }
  // Closes the unit that started at `begin`: pads the buffer to unit_align.
  void EndUnit(UnitKind kind, int64_t layer, int64_t begin, int64_t unit_align) {
    layout_->total = (layout_->total + unit_align - 1) / unit_align * unit_align;
    layout_->units.push_back({kind, layer, begin, layout_->total});
  }

 private:
  ParamLayout* layout_;
};

}  // namespace

int64_t ParamLayout::count() const {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.size();
  return n;
}

StatusOr<ParamLayout> BuildParamLayout(const ModelSpec& m, const ParallelContext& ctx,
                                       const LocalShape& s, int64_t unit_align) {
  if (unit_align < 1 || unit_align % kParamAlignElements != 0)
    return Status::InvalidArgument(fmt::format(
        "rule unit_align: {} must be a positive multiple of {}", unit_align, kParamAlignElements));
  if (m.experts > 1)
    return Status::InvalidArgument(fmt::format(
        "model '{}': the executor trains dense models only (experts = {})", m.name, m.experts));
  if (m.mla() || m.head_dim_override > 0 || m.qk_norm || m.attention_bias || m.attention_sinks ||
      m.sliding_window > 0)
    return Status::InvalidArgument(fmt::format(
        "model '{}': the executor implements plain multi-head/grouped-query attention with head_dim = "
        "hidden/heads; MLA, an explicit head_dim, q/k norms, o biases, attention sinks and sliding "
        "windows are planned and simulated only",
        m.name));
  if (m.alibi || m.embedding_norm)
    return Status::InvalidArgument(fmt::format(
        "model '{}': the executor implements learned (GPT-2) and rotary (Llama) positions without an "
        "embedding norm; ALiBi and the embedding LayerNorm (BLOOM) are not implemented",
        m.name));
  const bool gpt2 = m.arch == Arch::kGpt2;
  const bool qkv_bias = gpt2 || m.qkv_bias;
  const float resid_std = kInitStd / std::sqrt(2.0f * static_cast<float>(m.layers));
  ParamLayout p;
  Builder b(&p);
  if (ctx.has_embedding()) {
    p.wte =
        b.Add("wte.weight", s.vocab, s.hidden, ParamInit::kNormal, kInitStd, PaddedVocab(s.vocab));
    if (gpt2) p.wpe = b.Add("wpe.weight", m.max_positions, s.hidden, ParamInit::kNormal, kInitStd);
    p.embedding_unit = 0;
    b.EndUnit(UnitKind::kEmbedding, -1, 0, unit_align);
  }
  for (int64_t i = 0; i < s.layers; ++i) {
    const int64_t unit_begin = p.total;
    const std::string pre = fmt::format("layers.{}.", ctx.GlobalLayer(i));
    LayerParamOffsets l;
    // Matrices first, then vectors: AdamW runs per maximal run of equal decay.
    l.qkv_w = b.Add(pre + "qkv.weight", s.qkv_dim(), s.hidden, ParamInit::kNormal, kInitStd);
    l.out_w = b.Add(pre + "out.weight", s.hidden, s.q_dim(), ParamInit::kNormal, resid_std);
    if (gpt2) {
      l.fc_w = b.Add(pre + "fc.weight", s.ffn, s.hidden, ParamInit::kNormal, kInitStd);
      l.proj_w = b.Add(pre + "proj.weight", s.hidden, s.ffn, ParamInit::kNormal, resid_std);
    } else {
      l.fc_w = b.Add(pre + "gate_up.weight", 2 * s.ffn, s.hidden, ParamInit::kNormal, kInitStd);
      l.proj_w = b.Add(pre + "down.weight", s.hidden, s.ffn, ParamInit::kNormal, resid_std);
    }
    l.norm1_w = b.Add(pre + "norm1.weight", s.hidden, 0, ParamInit::kOnes);
    if (gpt2) l.norm1_b = b.Add(pre + "norm1.bias", s.hidden, 0, ParamInit::kZeros);
    if (qkv_bias) l.qkv_b = b.Add(pre + "qkv.bias", s.qkv_dim(), 0, ParamInit::kZeros);
    // Row-parallel biases live on every TP rank (added by TP rank 0 only).
    if (gpt2) l.out_b = b.Add(pre + "out.bias", s.hidden, 0, ParamInit::kZeros);
    l.norm2_w = b.Add(pre + "norm2.weight", s.hidden, 0, ParamInit::kOnes);
    if (gpt2) {
      l.norm2_b = b.Add(pre + "norm2.bias", s.hidden, 0, ParamInit::kZeros);
      l.fc_b = b.Add(pre + "fc.bias", s.ffn, 0, ParamInit::kZeros);
      l.proj_b = b.Add(pre + "proj.bias", s.hidden, 0, ParamInit::kZeros);
    }
    p.layers.push_back(l);
    b.EndUnit(UnitKind::kLayer, i, unit_begin, unit_align);
  }
  if (ctx.has_head()) {
    const int64_t unit_begin = p.total;
    p.final_norm_w = b.Add("final_norm.weight", s.hidden, 0, ParamInit::kOnes);
    if (gpt2) p.final_norm_b = b.Add("final_norm.bias", s.hidden, 0, ParamInit::kZeros);
    if (m.tie_embeddings && ctx.has_embedding()) {
      p.head = p.wte;
    } else if (m.tie_embeddings) {
      // Pipeline: the last stage's copy of the tied embedding; initialised to
      // wte's values, its gradient summed with the first stage's every step.
      p.head = b.Add("head.weight", s.vocab, s.hidden, ParamInit::kNormal, kInitStd,
                     PaddedVocab(s.vocab));
      p.head_is_tied_copy = true;
    } else {
      p.head = b.Add("head.weight", s.vocab, s.hidden, ParamInit::kNormal, kInitStd,
                     PaddedVocab(s.vocab));
    }
    p.head_unit = static_cast<int>(p.units.size());
    b.EndUnit(UnitKind::kHead, -1, unit_begin, unit_align);
  }
  return p;
}

}  // namespace p3d
