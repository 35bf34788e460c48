#include "executor/host/shard.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

namespace p3d {
namespace {

int64_t RoundUp(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// "rule heads%tp: 40 attention heads are not divisible by tp=16".
Status CheckDivisible(int64_t value, const char* what, int64_t divisor, const char* divisor_name,
                      const char* rule) {
  if (value % divisor != 0) {
    return Status::InvalidArgument(fmt::format("rule {}: {} {} are not divisible by {}={}", rule,
                                               value, what, divisor_name, divisor));
  }
  return Status::Ok();
}

}  // namespace

Range FlatShards::Shard(int rank) const {
  assert(rank >= 0 && rank < parts);
  return {rank * shard_numel, shard_numel};
}

Range FlatShards::ValidShard(int rank) const {
  const Range s = Shard(rank);
  const int64_t begin = std::min(s.offset, numel);
  return {begin, std::min(s.end(), numel) - begin};
}

StatusOr<FlatShards> ShardFlat(int64_t numel, int parts, int64_t alignment) {
  if (numel < 0) return Status::InvalidArgument(fmt::format("rule numel>=0: numel={}", numel));
  if (parts < 1) return Status::InvalidArgument(fmt::format("rule dp>=1: dp={}", parts));
  if (alignment < 1) {
    return Status::InvalidArgument(fmt::format("rule alignment>=1: alignment={}", alignment));
  }
  FlatShards s;
  s.numel = numel;
  s.parts = parts;
  s.padded_numel = RoundUp(numel, parts * alignment);
  s.shard_numel = s.padded_numel / parts;
  return s;
}

StatusOr<UnitShards> ShardUnits(const std::vector<int64_t>& unit_numel, int dp, int64_t alignment) {
  UnitShards out;
  for (int64_t n : unit_numel) {
    P3D_ASSIGN_OR_RETURN(FlatShards s, ShardFlat(n, dp, alignment));
    out.local_offset.push_back(out.local_numel);
    out.local_numel += s.shard_numel;
    out.units.push_back(s);
  }
  return out;
}

StatusOr<int64_t> ColumnParallelOut(int64_t out_features, int tp) {
  if (tp < 1) return Status::InvalidArgument(fmt::format("rule tp>=1: tp={}", tp));
  P3D_RETURN_IF_ERROR(CheckDivisible(out_features, "output features", tp, "tp", "features%tp"));
  return out_features / tp;
}

StatusOr<int64_t> RowParallelIn(int64_t in_features, int tp) {
  if (tp < 1) return Status::InvalidArgument(fmt::format("rule tp>=1: tp={}", tp));
  P3D_RETURN_IF_ERROR(CheckDivisible(in_features, "input features", tp, "tp", "features%tp"));
  return in_features / tp;
}

StatusOr<AttentionSplit> SplitAttention(int64_t heads, int64_t kv_heads, int tp) {
  if (tp < 1) return Status::InvalidArgument(fmt::format("rule tp>=1: tp={}", tp));
  if (heads < 1 || kv_heads < 1) {
    return Status::InvalidArgument(
        fmt::format("rule heads>=1: heads={} kv_heads={}", heads, kv_heads));
  }
  P3D_RETURN_IF_ERROR(
      CheckDivisible(heads, "attention heads", kv_heads, "kv_heads", "heads%kv_heads"));
  P3D_RETURN_IF_ERROR(CheckDivisible(heads, "attention heads", tp, "tp", "heads%tp"));
  P3D_RETURN_IF_ERROR(CheckDivisible(kv_heads, "KV groups", tp, "tp", "kv_heads%tp"));
  return AttentionSplit{heads / tp, kv_heads / tp};
}

StatusOr<VocabShards> ShardVocab(int64_t vocab, int tp, int64_t align) {
  if (vocab < 1) return Status::InvalidArgument(fmt::format("rule vocab>=1: vocab={}", vocab));
  if (tp < 1) return Status::InvalidArgument(fmt::format("rule tp>=1: tp={}", tp));
  if (align < 1) return Status::InvalidArgument(fmt::format("rule align>=1: align={}", align));
  VocabShards v;
  v.vocab = vocab;
  v.padded_vocab = RoundUp(vocab, align * tp);
  v.rows_per_rank = v.padded_vocab / tp;
  return v;
}

StatusOr<std::vector<Range>> ModelChunkLayers(int64_t layers, int chunks,
                                              const std::vector<int64_t>& sizes) {
  if (chunks < 1) return Status::InvalidArgument(fmt::format("rule chunks>=1: chunks={}", chunks));
  std::vector<int64_t> counts = sizes;
  if (counts.empty()) {
    if (layers % chunks != 0) {
      return Status::InvalidArgument(fmt::format(
          "rule layers%chunks: {} layers do not split evenly into {} model chunks (PP x VPP); "
          "give an uneven split per chunk",
          layers, chunks));
    }
    counts.assign(chunks, layers / chunks);
  }
  if (static_cast<int64_t>(counts.size()) != chunks) {
    return Status::InvalidArgument(
        fmt::format("rule sizes.size()==chunks: {} layer counts given for {} model chunks",
                    counts.size(), chunks));
  }
  std::vector<Range> out;
  int64_t next = 0;
  for (int k = 0; k < chunks; ++k) {
    if (counts[k] < 1) {
      return Status::InvalidArgument(
          fmt::format("rule sizes[k]>=1: model chunk {} has {} layers", k, counts[k]));
    }
    out.push_back({next, counts[k]});
    next += counts[k];
  }
  if (next != layers) {
    return Status::InvalidArgument(fmt::format(
        "rule sum(sizes)==layers: the split covers {} layers, the model has {}", next, layers));
  }
  return out;
}

Range StageChunkLayers(const std::vector<Range>& model_chunks, int pp, int pp_rank, int chunk) {
  assert(pp >= 1 && pp_rank >= 0 && pp_rank < pp && chunk >= 0);
  const size_t k = static_cast<size_t>(chunk) * pp + pp_rank;
  assert(k < model_chunks.size() && model_chunks.size() % pp == 0);
  return model_chunks[k];
}

}  // namespace p3d
