// Shard arithmetic for the executor: which slice of which buffer each rank
// owns under ZeRO (over DP), tensor parallelism (over TP) and pipeline
// parallelism (over PP). Everything is counted in ELEMENTS, not bytes; a
// caller multiplies by the dtype size. All functions are pure; errors name
// the rule, e.g. "rule heads%tp: 40 attention heads are not divisible by tp=16".
//
// ZeRO (Rajbhandari et al., SC'20), over the DP group of size DP:
//   ZeRO-1/2: the stage's whole flat parameter buffer (N elements) is padded
//     to a multiple of DP * alignment and split into DP equal, contiguous
//     shards; rank d owns [d * N'/DP, (d+1) * N'/DP) of the fp32 master
//     weights and Adam moments (ZeRO-1) and of the reduced gradients (ZeRO-2).
//   ZeRO-3: parameters are gathered one unit (one layer's flat buffer) at a
//     time, so each unit is padded and split on its own (ShardUnits); a rank
//     stores its slices of all units back to back.
// Alignment: shards are multiples of `alignment` elements (default 128 = 256
// bytes of bf16, 512 of fp32) so every shard starts on a 256-byte boundary
// for vectorised kernels and NCCL.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace p3d {

inline constexpr int64_t kShardAlignElements = 128;
// Megatron's --make-vocab-size-divisible-by default: the padded vocabulary is
// a multiple of 128 * TP, so each TP rank's slice is a multiple of 128.
inline constexpr int64_t kVocabAlignElements = 128;

// A half-open range [offset, offset + size) of elements (or of layers).
struct Range {
  int64_t offset = 0;
  int64_t size = 0;
  int64_t end() const { return offset + size; }
  bool operator==(const Range&) const = default;
};

// A flat buffer of `numel` real elements split evenly across `parts` ranks.
// Invariants: padded_numel = shard_numel * parts >= numel; shard_numel is a
// multiple of the alignment; padded_numel - numel < parts * alignment.
struct FlatShards {
  int64_t numel = 0;
  int64_t padded_numel = 0;
  int64_t shard_numel = 0;
  int parts = 1;
  // Rank's shard in the padded buffer: [rank * shard_numel, +shard_numel).
  Range Shard(int rank) const;
  // The part of Shard(rank) that holds real elements (size may be 0 for the
  // last ranks of a tiny buffer).
  Range ValidShard(int rank) const;
};

// Errors: "rule numel>=0", "rule dp>=1", "rule alignment>=1".
StatusOr<FlatShards> ShardFlat(int64_t numel, int parts, int64_t alignment = kShardAlignElements);

// ZeRO-3: each unit (e.g. one layer's parameters) sharded on its own.
struct UnitShards {
  std::vector<FlatShards> units;
  std::vector<int64_t> local_offset;  // where unit u's shard starts in the rank's shard storage
  int64_t local_numel = 0;            // elements each rank stores (sum of shard_numel)
};
StatusOr<UnitShards> ShardUnits(const std::vector<int64_t>& unit_numel, int dp,
                                int64_t alignment = kShardAlignElements);

// Tensor-parallel sizes (Megatron): a column-parallel linear splits its
// output features across TP, a row-parallel linear its input features.
// Errors: "rule features%tp".
StatusOr<int64_t> ColumnParallelOut(int64_t out_features, int tp);
StatusOr<int64_t> RowParallelIn(int64_t in_features, int tp);

// Attention heads and KV groups (GQA) across TP. As Megatron-core requires,
// both the query heads and the KV groups divide by TP (no KV replication),
// and query heads divide by KV groups.
struct AttentionSplit {
  int64_t heads = 0;     // NH / TP query heads per rank
  int64_t kv_heads = 0;  // KV / TP key/value groups per rank
};
// Errors: "rule tp>=1", "rule heads%kv_heads", "rule heads%tp", "rule kv_heads%tp".
StatusOr<AttentionSplit> SplitAttention(int64_t heads, int64_t kv_heads, int tp);

// Vocab-parallel embedding / LM head / cross-entropy: the vocabulary V is
// padded to V' = the next multiple of `align` * TP (Megatron's
// make-vocab-size-divisible-by, default 128), and TP rank t owns rows
// [t * V'/TP, (t+1) * V'/TP). Rows >= V are padding (their logits are masked
// out of the softmax). Errors: "rule vocab>=1", "rule tp>=1", "rule align>=1".
struct VocabShards {
  int64_t vocab = 0;
  int64_t padded_vocab = 0;
  int64_t rows_per_rank = 0;
  Range Rows(int tp_rank) const { return {tp_rank * rows_per_rank, rows_per_rank}; }
};
StatusOr<VocabShards> ShardVocab(int64_t vocab, int tp, int64_t align = kVocabAlignElements);

// Pipeline: layers are split into `chunks` contiguous model chunks (chunks =
// PP * VPP). `sizes` empty means an even split (rule "layers%chunks");
// otherwise sizes[k] is model chunk k's layer count (an uneven split, e.g.
// fewer layers on the stages that hold the embedding or the LM head): rules
// "sizes.size()==chunks", "sizes[k]>=1", "sum(sizes)==layers".
// Returns one layer range per model chunk, in model order.
StatusOr<std::vector<Range>> ModelChunkLayers(int64_t layers, int chunks,
                                              const std::vector<int64_t>& sizes = {});

// Layers of virtual chunk `chunk` on pipeline rank `pp_rank`, consistent with
// simulator/schedule.h: that is model chunk  chunk * PP + pp_rank.
// `model_chunks` is ModelChunkLayers(layers, PP * VPP, ...). Preconditions:
// model_chunks.size() == PP * VPP, 0 <= pp_rank < PP, 0 <= chunk < VPP.
Range StageChunkLayers(const std::vector<Range>& model_chunks, int pp, int pp_rank, int chunk);

}  // namespace p3d
