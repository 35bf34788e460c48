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

TEST(GradBucketsTest, ReverseOrderGreedyBuckets) {
  // Parameters 0..4 in forward order; backward produces 4 first.
  // Sizes 50, 300, 40, 70, 90 with buckets closing at >= 100 elements:
  //   bucket 0: params 4 (90) + 3 (70) = 160; bucket 1: 2 (40) + 1 (300) = 340;
  //   bucket 2: 0 (50), the last and smaller one.
  auto b = AssignGradBuckets({50, 300, 40, 70, 90}, 100);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->buckets.size(), 3u);
  EXPECT_EQ(b->buckets[0].params, (std::vector<int>{4, 3}));
  EXPECT_EQ(b->buckets[0].range, (Range{0, 160}));
  EXPECT_EQ(b->buckets[1].params, (std::vector<int>{2, 1}));
  EXPECT_EQ(b->buckets[1].range, (Range{160, 340}));
  EXPECT_EQ(b->buckets[2].params, (std::vector<int>{0}));
  EXPECT_EQ(b->buckets[2].range, (Range{500, 50}));
  EXPECT_EQ(b->param_range[4], (Range{0, 90}));
  EXPECT_EQ(b->param_range[3], (Range{90, 70}));
  EXPECT_EQ(b->param_range[0], (Range{500, 50}));
  EXPECT_EQ(b->buffer_numel, 550);
}

TEST(GradBucketsTest, PaddedBucketsShardEvenlyForReduceScatter) {
  // ZeRO-2 with DP=4 and 128-element alignment: every bucket is a multiple of
  // 512, so ShardFlat(bucket size, 4) needs no further padding.
  const std::vector<int64_t> params = {1000, 3, 4096, 777, 1, 2048, 5000};
  const int dp = 4;
  auto b = AssignGradBuckets(params, 4096, dp * kShardAlignElements);
  ASSERT_TRUE(b.ok());
  int64_t next = 0;
  std::vector<int> seen(params.size(), 0);
  for (const GradBucket& bucket : b->buckets) {
    EXPECT_EQ(bucket.range.offset, next);
    EXPECT_EQ(bucket.range.size % (dp * kShardAlignElements), 0);
    auto s = ShardFlat(bucket.range.size, dp);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->padded_numel, bucket.range.size);
    // Parameters lie inside their bucket, back to back.
    int64_t p_next = bucket.range.offset;
    for (int p : bucket.params) {
      ++seen[p];
      EXPECT_EQ(b->param_range[p].offset, p_next);
      EXPECT_EQ(b->param_range[p].size, params[p]);
      p_next = b->param_range[p].end();
    }
    EXPECT_LE(p_next, bucket.range.end());
    next = bucket.range.end();
  }
  EXPECT_EQ(next, b->buffer_numel);
  for (int times : seen) EXPECT_EQ(times, 1);
  // Only the last bucket may hold fewer real elements than the bucket size.
  for (size_t i = 0; i + 1 < b->buckets.size(); ++i) {
    int64_t real = 0;
    for (int p : b->buckets[i].params) real += params[p];
    EXPECT_GE(real, 4096);
  }
}

TEST(GradBucketsTest, RejectsBadInputs) {
  ExpectRule(AssignGradBuckets({10}, 0).status(), "rule bucket_numel>=1");
  ExpectRule(AssignGradBuckets({10}, 10, 0).status(), "rule bucket_multiple>=1");
  ExpectRule(AssignGradBuckets({10, -1}, 10).status(), "rule param_numel>=0");
  auto empty = AssignGradBuckets({}, 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->buckets.empty());
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
