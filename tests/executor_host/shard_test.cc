#include "executor/host/shard.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>

namespace p3d {
namespace {

void ExpectRule(const Status& s, const std::string& rule) {
  ASSERT_FALSE(s.ok()) << "expected failure of " << rule;
  EXPECT_NE(s.message().find(rule), std::string::npos) << s.message();
}

TEST(ShardFlatTest, PadsToDpTimesAlignmentAndCoversTheBuffer) {
  // 1000 elements over DP=3 with 128-element alignment: padded to 3*128*3 = 1152,
  // 384 per rank; rank 2 holds 1000-768 = 232 real elements.
  auto s = ShardFlat(1000, 3, 128);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->padded_numel, 1152);
  EXPECT_EQ(s->shard_numel, 384);
  EXPECT_EQ(s->Shard(2), (Range{768, 384}));
  EXPECT_EQ(s->ValidShard(2), (Range{768, 232}));
  EXPECT_EQ(s->ValidShard(0), (Range{0, 384}));
}

TEST(ShardFlatTest, InvariantsOverManySizes) {
  for (int dp : {1, 2, 3, 4, 8, 64}) {
    for (int64_t align : std::vector<int64_t>{1, 64, 128}) {
      for (int64_t n : std::vector<int64_t>{0, 1, 127, 128, 129, 1000, 123457, 7500000000 / 64}) {
        auto s = ShardFlat(n, dp, align);
        ASSERT_TRUE(s.ok());
        EXPECT_EQ(s->shard_numel * dp, s->padded_numel);
        EXPECT_GE(s->padded_numel, n);
        EXPECT_LT(s->padded_numel - n, dp * align);
        EXPECT_EQ(s->shard_numel % align, 0);
        // Valid shards tile [0, n) exactly, in rank order.
        int64_t covered = 0;
        for (int r = 0; r < dp; ++r) {
          const Range v = s->ValidShard(r);
          EXPECT_EQ(v.offset, covered);
          EXPECT_EQ(s->Shard(r).offset % align, 0);
          covered += v.size;
        }
        EXPECT_EQ(covered, n);
      }
    }
  }
}

TEST(ShardFlatTest, RejectsBadInputs) {
  ExpectRule(ShardFlat(-1, 2).status(), "rule numel>=0");
  ExpectRule(ShardFlat(10, 0).status(), "rule dp>=1");
  ExpectRule(ShardFlat(10, 2, 0).status(), "rule alignment>=1");
}

TEST(ShardUnitsTest, EachUnitShardedOnItsOwn) {
  // ZeRO-3 over DP=4: units of 1000, 10 and 512 elements -> shards of 256, 128, 128.
  auto u = ShardUnits({1000, 10, 512}, 4, 128);
  ASSERT_TRUE(u.ok());
  ASSERT_EQ(u->units.size(), 3u);
  EXPECT_EQ(u->units[0].shard_numel, 256);
  EXPECT_EQ(u->units[1].shard_numel, 128);
  EXPECT_EQ(u->units[2].shard_numel, 128);
  EXPECT_EQ(u->local_offset, (std::vector<int64_t>{0, 256, 384}));
  EXPECT_EQ(u->local_numel, 512);
  ExpectRule(ShardUnits({10, -5}, 4).status(), "rule numel>=0");
}

TEST(TensorParallelTest, LinearSplits) {
  // GPT-3 175B: H = 12288, F = 4H; TP8 -> MLP column shard 6144, row input 6144.
  EXPECT_EQ(*ColumnParallelOut(4 * 12288, 8), 6144);
  EXPECT_EQ(*RowParallelIn(4 * 12288, 8), 6144);
  ExpectRule(ColumnParallelOut(1000, 3).status(), "rule features%tp");
  ExpectRule(RowParallelIn(1000, 3).status(), "rule features%tp");
  ExpectRule(RowParallelIn(1000, 0).status(), "rule tp>=1");
}

TEST(TensorParallelTest, AttentionHeadsAndKvGroups) {
  // Llama-2 70B: 64 query heads, 8 KV groups. TP8 -> 8 heads, 1 KV group per rank.
  auto a = SplitAttention(64, 8, 8);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->heads, 8);
  EXPECT_EQ(a->kv_heads, 1);
  // TP16 would need KV replication, which Megatron-core does not do.
  ExpectRule(SplitAttention(64, 8, 16).status(), "rule kv_heads%tp");
  auto s = SplitAttention(40, 40, 16).status();
  ExpectRule(s, "rule heads%tp");
  EXPECT_NE(s.message().find("40 attention heads are not divisible by tp=16"), std::string::npos)
      << s.message();
  ExpectRule(SplitAttention(12, 5, 1).status(), "rule heads%kv_heads");
}

TEST(TensorParallelTest, VocabParallelRanges) {
  // GPT-2: V = 50257; TP2 pads to a multiple of 256 -> 50432, 25216 rows each.
  auto v = ShardVocab(50257, 2);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->padded_vocab, 50432);
  EXPECT_EQ(v->rows_per_rank, 25216);
  EXPECT_EQ(v->Rows(1), (Range{25216, 25216}));
  for (int tp : {1, 2, 4, 8, 3}) {
    auto w = ShardVocab(32000, tp);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->rows_per_rank % kVocabAlignElements, 0);
    EXPECT_EQ(w->Rows(tp - 1).end(), w->padded_vocab);
    EXPECT_GE(w->padded_vocab, 32000);
    EXPECT_LT(w->padded_vocab - 32000, tp * kVocabAlignElements);
  }
  ExpectRule(ShardVocab(0, 2).status(), "rule vocab>=1");
  ExpectRule(ShardVocab(100, 0).status(), "rule tp>=1");
}

TEST(PipelineLayersTest, EvenAndUnevenSplits) {
  auto even = ModelChunkLayers(24, 4);
  ASSERT_TRUE(even.ok());
  EXPECT_EQ(*even, (std::vector<Range>{{0, 6}, {6, 6}, {12, 6}, {18, 6}}));
  // Uneven: fewer layers on the first and last stage (embedding, LM head).
  auto uneven = ModelChunkLayers(30, 4, {7, 8, 8, 7});
  ASSERT_TRUE(uneven.ok());
  EXPECT_EQ(*uneven, (std::vector<Range>{{0, 7}, {7, 8}, {15, 8}, {23, 7}}));
  ExpectRule(ModelChunkLayers(30, 4).status(), "rule layers%chunks");
  ExpectRule(ModelChunkLayers(30, 4, {7, 8, 15}).status(), "rule sizes.size()==chunks");
  ExpectRule(ModelChunkLayers(30, 4, {7, 8, 16, 0}).status(), "rule sizes[k]>=1");
  ExpectRule(ModelChunkLayers(30, 4, {7, 8, 8, 8}).status(), "rule sum(sizes)==layers");
  ExpectRule(ModelChunkLayers(30, 0).status(), "rule chunks>=1");
}

TEST(PipelineLayersTest, InterleavedChunksFollowScheduleConvention) {
  // 16 layers, PP=2, VPP=2 -> 4 model chunks of 4 layers. simulator/schedule.h:
  // chunk c on pp rank r is model chunk c*PP + r, so rank 0 holds layers 0-3
  // and 8-11, rank 1 holds 4-7 and 12-15.
  auto chunks = ModelChunkLayers(16, 2 * 2);
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(StageChunkLayers(*chunks, 2, 0, 0), (Range{0, 4}));
  EXPECT_EQ(StageChunkLayers(*chunks, 2, 1, 0), (Range{4, 4}));
  EXPECT_EQ(StageChunkLayers(*chunks, 2, 0, 1), (Range{8, 4}));
  EXPECT_EQ(StageChunkLayers(*chunks, 2, 1, 1), (Range{12, 4}));
  // Property: over all (rank, chunk) every layer is owned exactly once, and
  // following the forward order (chunk-major, then rank) walks layers 0..L-1.
  for (int pp : {1, 2, 3, 4}) {
    for (int vpp : {1, 2, 3}) {
      const int64_t layers = 2 * pp * vpp;
      auto mc = ModelChunkLayers(layers, pp * vpp);
      ASSERT_TRUE(mc.ok());
      int64_t next = 0;
      for (int c = 0; c < vpp; ++c) {
        for (int r = 0; r < pp; ++r) {
          const Range range = StageChunkLayers(*mc, pp, r, c);
          EXPECT_EQ(range.offset, next);
          next = range.end();
        }
      }
      EXPECT_EQ(next, layers);
    }
  }
}

}  // namespace
}  // namespace p3d
