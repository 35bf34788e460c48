// ParamLayout: where each parameter tensor of this GPU's shard lives in the flat
// parameter buffers. The bf16 weights, fp32 gradients, fp32 master weights and
// the two fp32 Adam moments are five flat buffers with the SAME element offsets,
// so one offset addresses a tensor in all of them (and a ZeRO shard is a range).
//
// Tensor shapes (PyTorch convention: a linear layer's weight is [out, in]):
//   per layer   norm1.weight [H] (+ norm1.bias [H], GPT-2)
//               qkv.weight [(NH+2KV)*HD, H]   rows: NH query heads, KV key, KV value
//               qkv.bias   [(NH+2KV)*HD]      (GPT-2, or Llama with qkv_bias)
//               out.weight [H, NH*HD]  (+ out.bias [H], GPT-2)
//               norm2.weight/bias as norm1
//               GPT-2: fc.weight [F, H], fc.bias [F], proj.weight [H, F], proj.bias [H]
//               Llama: gate_up.weight [2F, H] (rows: F gate, then F up), down.weight [H, F]
//   global      wte [V, H]; wpe [P, H] (GPT-2); final_norm.weight [H] (+ bias, GPT-2);
//               head.weight [V, H] unless the head is tied to wte; with
//               pipeline stages a tied head is a copy of wte on the last stage
//               (head_is_tied_copy), kept equal by summing both gradients.
// Under TP the vocabulary tensors hold the rank's LocalShape::vocab rows, and
// the other matrices their column/row-parallel slices (executor/tensor_parallel.h).
// Each tensor starts at a multiple of kParamAlignElements (256-byte aligned in
// bf16); the gaps are zero in every buffer and stay zero. The vocabulary
// tensors (wte, head) are stored with PaddedVocab(V) rows: the extra rows are
// zero and stay zero (their gradient is zero), so the LM-head GEMMs can run
// with n or k = PaddedVocab(V) instead of an odd V (50257), which cuBLASLt
// runs about 6x slower on H100 (p3d-gemm-bench, bench/results/executor-h100.md).
//
// Units: the buffer is cut into units, in order: the embedding unit (wte,
// wpe; first stage only), one unit per layer, the head unit (final norm and an
// untied head; last stage only). Each unit ends on a multiple of `unit_align`
// elements (zero padding), so a data-parallel group of DP ranks can split every
// unit into DP equal, aligned slices (unit_align = DP * kParamAlignElements):
// a unit is the ZeRO ownership and ZeRO-3 gather unit (executor/zero_layout.h)
// and gradient buckets are runs of whole units (executor/overlap_schedule.h). With unit_align =
// kParamAlignElements the units add no padding (the single-GPU layout).
//
// Initialisation (deterministic from the seed): matrices N(0, 0.02), the two
// residual-branch output projections (out, proj/down) N(0, 0.02 / sqrt(2 L)),
// norm weights 1, biases 0. Weight decay applies to 2-D tensors only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/parallel_context.h"
#include "models/model_spec.h"

namespace p3d {

inline constexpr int64_t kParamAlignElements = 128;
inline constexpr int64_t kVocabRowAlign = 64;
// V rounded up to a multiple of kVocabRowAlign: stored rows of wte/head and the
// row stride of the logits chunk.
constexpr int64_t PaddedVocab(int64_t vocab) {
  return (vocab + kVocabRowAlign - 1) / kVocabRowAlign * kVocabRowAlign;
}

enum class ParamInit { kNormal, kOnes, kZeros };

struct ParamTensor {
  std::string name;            // e.g. "layers.3.qkv.weight"
  int64_t rows = 0, cols = 0;  // cols == 0 for a vector
  int64_t storage_rows = 0;    // rows stored (>= rows; zero padding rows beyond `rows`)
  int64_t offset = 0;          // elements into the flat buffers
  ParamInit init = ParamInit::kZeros;
  float stddev = 0.0f;  // kNormal only
  bool decay = false;   // weight decay on (2-D tensors)
  int64_t size() const { return cols == 0 ? rows : rows * cols; }
};

// Element offsets of one layer's tensors; -1 where the architecture has none.
struct LayerParamOffsets {
  int64_t norm1_w = -1, norm1_b = -1, qkv_w = -1, qkv_b = -1, out_w = -1, out_b = -1;
  int64_t norm2_w = -1, norm2_b = -1;
  int64_t fc_w = -1, fc_b = -1;      // GPT-2 fc [F,H] or Llama gate_up [2F,H]
  int64_t proj_w = -1, proj_b = -1;  // GPT-2 proj [H,F] or Llama down [H,F]
};

enum class UnitKind { kEmbedding, kLayer, kHead };
struct ParamUnit {
  UnitKind kind = UnitKind::kLayer;
  int64_t layer = -1;          // local layer index for kLayer, else -1
  int64_t begin = 0, end = 0;  // elements [begin, end) of the flat buffers, padding included
  int64_t size() const { return end - begin; }
};

struct ParamLayout {
  std::vector<ParamTensor> tensors;  // in buffer order
  std::vector<LayerParamOffsets> layers;
  int64_t wte = -1, wpe = -1, final_norm_w = -1, final_norm_b = -1;
  int64_t head = -1;                        // == wte when tied on one stage
  bool head_is_tied_copy = false;           // tied model, PP > 1: the last stage's copy of wte
  std::vector<ParamUnit> units;             // in buffer order, covering [0, total)
  int embedding_unit = -1, head_unit = -1;  // indices into units; -1 when absent
  int LayerUnit(int64_t layer) const { return static_cast<int>(layer) + (embedding_unit >= 0); }
  int64_t total = 0;      // buffer length in elements, gaps included
  int64_t count() const;  // parameters (gaps excluded)
};

// Layout for this GPU's shard (LocalShape) of `model`; the embedding/head are
// present per ParallelContext::has_embedding()/has_head(). unit_align: a
// positive multiple of kParamAlignElements ("rule unit_align").
StatusOr<ParamLayout> BuildParamLayout(const ModelSpec& model, const ParallelContext& ctx,
                                       const LocalShape& local,
                                       int64_t unit_align = kParamAlignElements);

}  // namespace p3d
