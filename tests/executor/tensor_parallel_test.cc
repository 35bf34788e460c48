// Host-side tensor-parallel logic (CPU): shard slicing against the single-GPU
// layout, gradient-norm scales, local vocabulary buckets, sequence-parallel
// token slices and the norm gradients summed over TP.
#include "executor/tensor_parallel.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "models/zoo.h"

namespace p3d {
namespace {

ModelSpec TinyLlama() {
  ModelSpec m;
  m.name = "tp-test-llama";
  m.arch = Arch::kLlama;
  m.layers = 2;
  m.hidden = 64;
  m.heads = 8;
  m.kv_heads = 4;
  m.ffn = 96;
  m.vocab = 250;
  m.max_positions = 128;
  return m;
}

ModelSpec TinyGpt2() {
  ModelSpec m = TinyLlama();
  m.name = "tp-test-gpt2";
  m.arch = Arch::kGpt2;
  m.kv_heads = m.heads;
  m.tie_embeddings = true;
  return m;
}

struct Shard {
  ParallelContext ctx;
  LocalShape local;
  ParamLayout params;
};

Shard Build(const ModelSpec& m, int tp, int tp_rank, int pp = 1, int pp_rank = 0) {
  Shard s;
  s.ctx = SingleGpuContext(m);
  s.ctx.tp = tp;
  s.ctx.tp_rank = tp_rank;
  s.ctx.pp = pp;
  s.ctx.pp_rank = pp_rank;
  s.ctx.layers = m.layers / pp;
  s.ctx.first_layer = pp_rank * s.ctx.layers;
  auto local = ShardShape(m, s.ctx);
  EXPECT_TRUE(local.ok()) << local.status().message();
  s.local = *local;
  auto p = BuildParamLayout(m, s.ctx, s.local);
  EXPECT_TRUE(p.ok()) << p.status().message();
  s.params = *p;
  return s;
}

// Every element of every single-GPU tensor lands exactly once across the TP
// ranks (split tensors) or once on every rank (replicated ones), and every
// local element is written by exactly one block: so TP ranks together hold
// precisely the single-GPU initialisation.
void ExpectTpShardsTileTheFullModel(const ModelSpec& m, int tp) {
  const Shard full = Build(m, 1, 0);
  // (full tensor, row, col) -> number of ranks holding it
  std::map<std::tuple<int, int64_t, int64_t>, int> held;
  for (int t = 0; t < tp; ++t) {
    const Shard s = Build(m, tp, t);
    auto map = MapShardToFull(m, s.ctx, s.local, s.params, full.params);
    ASSERT_TRUE(map.ok()) << map.status().message();
    ASSERT_EQ(map->size(), s.params.tensors.size());
    for (const TensorSource& src : *map) {
      const ParamTensor& lt = s.params.tensors[src.local_index];
      std::set<std::pair<int64_t, int64_t>> written;
      for (const ShardBlock& b : src.blocks)
        for (int64_t r = 0; r < b.rows; ++r)
          for (int64_t c = 0; c < b.cols; ++c) {
            EXPECT_TRUE(written.insert({b.dst_row + r, b.dst_col + c}).second) << lt.name;
            ++held[{src.full_index, b.src_row + r, b.src_col + c}];
          }
      EXPECT_EQ(static_cast<int64_t>(written.size()), lt.size()) << lt.name;
    }
  }
  for (size_t j = 0; j < full.params.tensors.size(); ++j) {
    const ParamTensor& ft = full.params.tensors[j];
    const bool split = ft.name.find("norm") == std::string::npos &&
                       ft.name.find("wpe") == std::string::npos &&
                       ft.name.find("out.bias") == std::string::npos &&
                       ft.name.find("proj.bias") == std::string::npos;
    const int64_t cols = ft.cols == 0 ? 1 : ft.cols;
    for (int64_t r = 0; r < ft.rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ((held[{static_cast<int>(j), r, c}]), split ? 1 : tp)
            << ft.name << " [" << r << ", " << c << "] tp=" << tp;
  }
}

TEST(TensorParallelTest, ShardsTileTheSingleGpuTensors) {
  for (int tp : {1, 2, 4}) {
    ExpectTpShardsTileTheFullModel(TinyLlama(), tp);
    ExpectTpShardsTileTheFullModel(TinyGpt2(), tp);
  }
}

TEST(TensorParallelTest, QkvShardTakesItsOwnHeadsAndGroups) {
  // Llama, NH = 8, KV = 4, HD = 8, TP = 2, rank 1: q rows [32, 64), k rows
  // 64 + [16, 32), v rows 96 + [16, 32).
  const ModelSpec m = TinyLlama();
  const Shard full = Build(m, 1, 0), s = Build(m, 2, 1);
  auto map = MapShardToFull(m, s.ctx, s.local, s.params, full.params);
  ASSERT_TRUE(map.ok());
  size_t i = 0;
  while (i < s.params.tensors.size() && s.params.tensors[i].name != "layers.0.qkv.weight") ++i;
  ASSERT_LT(i, map->size());
  const TensorSource& qkv = (*map)[i];
  ASSERT_EQ(qkv.blocks.size(), 3u);
  EXPECT_EQ(qkv.blocks[0].src_row, 32);
  EXPECT_EQ(qkv.blocks[0].rows, 32);
  EXPECT_EQ(qkv.blocks[1].src_row, 64 + 16);
  EXPECT_EQ(qkv.blocks[1].dst_row, 32);
  EXPECT_EQ(qkv.blocks[2].src_row, 96 + 16);
  EXPECT_EQ(qkv.blocks[2].dst_row, 48);
}

TEST(TensorParallelTest, VocabShardsCoverTheVocabulary) {
  // V = 250, TP = 2: padded to 256 (a multiple of 64 * 2), 128 rows per rank;
  // rank 1 holds rows [128, 250). V = 130, TP = 4: 64 rows per rank, rank 3
  // would start at 192 > V: refused by rule.
  ModelSpec m = TinyLlama();
  ParallelContext ctx = SingleGpuContext(m);
  ctx.tp = 2;
  ctx.tp_rank = 1;
  auto s = ShardShape(m, ctx);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->vocab_begin, 128);
  EXPECT_EQ(s->vocab, 250 - 128);
  m.vocab = 130;
  ctx.tp = 4;
  ctx.tp_rank = 2;
  s = ShardShape(m, ctx);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->vocab, 2);
  ctx.tp_rank = 3;
  s = ShardShape(m, ctx);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("vocab rows"), std::string::npos);
}

TEST(TensorParallelTest, InterleavedStageNamesItsModelChunksLayers) {
  // L = 8, PP = 2, VPP = 2: chunks of 2 layers; rank 1 holds model chunks 1
  // and 3 = layers 2, 3, 6, 7 (simulator/schedule.h's c * PP + r).
  ModelSpec m = TinyLlama();
  m.layers = 8;
  ParallelContext ctx = SingleGpuContext(m);
  ctx.pp = 2;
  ctx.pp_rank = 1;
  ctx.vpp = 2;
  ctx.layers = 4;
  EXPECT_EQ(ctx.GlobalLayer(0), 2);
  EXPECT_EQ(ctx.GlobalLayer(1), 3);
  EXPECT_EQ(ctx.GlobalLayer(2), 6);
  EXPECT_EQ(ctx.GlobalLayer(3), 7);
  auto s = ShardShape(m, ctx);
  ASSERT_TRUE(s.ok()) << s.status().message();
  auto p = BuildParamLayout(m, ctx, *s);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tensors[0].name, "layers.2.qkv.weight");
  ctx.layers = 3;  // not an even split
  EXPECT_FALSE(ShardShape(m, ctx).ok());
}

TEST(TensorParallelTest, NormScalesCountReplicatedTensorsOnce) {
  const ModelSpec m = TinyGpt2();
  const Shard s = Build(m, 2, 0);
  std::vector<NormScale> scales = NormScales(s.params, 2);
  int64_t replicated = 0;
  for (const ParamTensor& t : s.params.tensors)
    if (t.name.find("norm") != std::string::npos || t.name == "wpe.weight" ||
        t.name.find("out.bias") != std::string::npos ||
        t.name.find("proj.bias") != std::string::npos)
      replicated += t.size();
  int64_t scaled = 0;
  for (const NormScale& n : scales) {
    EXPECT_FLOAT_EQ(n.scale, 0.5f);
    scaled += n.end - n.begin;
  }
  EXPECT_EQ(scaled, replicated);
  EXPECT_TRUE(NormScales(Build(m, 1, 0).params, 1).empty());
  // Pipeline, tied embedding: the last stage's head copy counts zero times.
  const Shard last = Build(m, 1, 0, 2, 1);
  ASSERT_TRUE(last.params.head_is_tied_copy);
  scales = NormScales(last.params, 1);
  ASSERT_EQ(scales.size(), 1u);
  EXPECT_EQ(scales[0].begin, last.params.head);
  EXPECT_EQ(scales[0].scale, 0.0f);
}

TEST(TensorParallelTest, LocalVocabBucketsKeepOnlyOwnedTokensInLocalRows) {
  const std::vector<int32_t> tokens = {5, 200, 5, 130, 7, 200};
  const TokenBuckets all = BuildTokenBuckets(tokens);
  const TokenBuckets b = LocalVocabBuckets(all, 128, 128);  // rows [128, 256)
  EXPECT_EQ(b.token, (std::vector<int32_t>{2, 72}));
  EXPECT_EQ(b.offset, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{3, 1, 5}));
}

// Sequence parallel: TP rank r holds rows [r T/TP, (r+1) T/TP); the slices
// tile [0, T) in rank order (the block order of NCCL's all-gather and
// reduce-scatter).
TEST(SequenceParallelTest, SlicesTileTheTokensInRankOrder) {
  for (int tp : {1, 2, 4, 8}) {
    const int64_t T = 4 * 128;
    int64_t next = 0;
    for (int r = 0; r < tp; ++r) {
      auto s = SequenceShard(T, tp, r);
      ASSERT_TRUE(s.ok()) << s.status().message();
      EXPECT_EQ(s->begin, next) << "tp " << tp << " rank " << r;
      EXPECT_EQ(s->rows, T / tp);
      next = s->begin + s->rows;
    }
    EXPECT_EQ(next, T);
  }
  auto odd = SequenceShard(6, 4, 0);
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().message().find("rule tokens % tp"), std::string::npos);
  EXPECT_FALSE(SequenceShard(8, 2, 2).ok());
}

// Exactly the norms' weights and biases (layer norms and the final norm) are
// summed over TP; no other tensor's element is inside a range, and the ranges
// are ordered and disjoint.
TEST(SequenceParallelTest, GradRangesCoverExactlyTheNorms) {
  for (const ModelSpec& m : {TinyGpt2(), TinyLlama()}) {
    for (int pp_rank : {0, 1}) {
      const Shard s = Build(m, 2, 1, 2, pp_rank);
      const std::vector<ElementRange> ranges = SequenceParallelGradRanges(s.params);
      ASSERT_FALSE(ranges.empty());
      for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].end, ranges[i].begin);
      auto inside = [&](int64_t e) {
        for (const ElementRange& r : ranges)
          if (e >= r.begin && e < r.end) return true;
        return false;
      };
      int64_t norm_elements = 0;
      for (const ParamTensor& t : s.params.tensors) {
        const bool norm = t.name.find("norm") != std::string::npos;
        if (norm) norm_elements += t.size();
        EXPECT_EQ(inside(t.offset), norm) << t.name;
        EXPECT_EQ(inside(t.offset + t.size() - 1), norm) << t.name;
      }
      // GPT-2: 4 norm tensors per layer (+ 2 final); Llama: 2 per layer (+ 1).
      const int per_layer = m.arch == Arch::kGpt2 ? 4 : 2;
      const bool last = pp_rank == 1;
      EXPECT_EQ(norm_elements,
                m.hidden * (per_layer * s.ctx.layers + (last ? per_layer / 2 : 0)));
    }
  }
}

}  // namespace
}  // namespace p3d
