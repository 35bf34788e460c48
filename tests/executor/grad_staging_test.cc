// Gradient staging of ZeRO-2/3 at DP > 1 (executor/zero_layout.h GradStaging):
// which staging buffer each gradient bucket (executor/overlap_schedule.h)
// accumulates in, the flat element -> staging element map Model::G uses, the
// reduce-scatter of a staged bucket into the shard, and the arena it costs
// (executor/memory_plan.h), on CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "executor/memory_plan.h"
#include "executor/overlap_schedule.h"
#include "executor/param_layout.h"
#include "executor/zero_layout.h"
#include "models/zoo.h"

namespace p3d {
namespace {

ParamLayout Layout(const ModelSpec& m, int dp) {
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  EXPECT_TRUE(s.ok());
  auto p = BuildParamLayout(m, ctx, *s, dp * kParamAlignElements);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

// The shape gpu_check.sh's DP equivalence runs (tests/executor/models/
// tiny-gpt2-bytes.json): tiny-gpt with a tied byte vocabulary, so the
// embedding unit (256 + 1024 positions) x 256 is narrower than a layer.
ModelSpec TinyBytes() {
  ModelSpec m = *ZooModel("tiny-gpt");
  m.vocab = 256;
  m.tie_embeddings = true;
  return m;
}

ParamLayout ZooLayout(const char* id, int dp) {
  auto m = ZooModel(id);
  EXPECT_TRUE(m.ok());
  return Layout(*m, dp);
}

int64_t MaxLayerUnit(const ParamLayout& p) {
  int64_t n = 0;
  for (const ParamUnit& u : p.units)
    if (u.kind == UnitKind::kLayer) n = std::max(n, u.size());
  return n;
}

// Buckets of `bytes` (1: every unit alone, the staging of single-unit buckets).
GradBuckets Buckets(const ParamLayout& p, int64_t bytes) {
  auto b = BuildGradBuckets(p, bytes);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return *b;
}
GradStaging UnitStaging(const ParamLayout& p) { return BuildGradStaging(p, Buckets(p, 1)); }

// Elements buffer b can hold: up to the next buffer, or the region's end.
int64_t BufferCapacity(const GradStaging& st, int b) {
  return (b + 1 < st.buffers() ? st.buffer_begin[b + 1] : st.total_elements) - st.buffer_begin[b];
}

// The order Model::TrainMicroBatch writes gradients in (a unit may appear
// twice): the loss writes the head unit (and wte, i.e. the embedding unit,
// when tied), then layers L-1..0, then the embedding backward.
std::vector<int> BackwardWrites(const ParamLayout& p) {
  std::vector<int> w;
  if (p.head_unit >= 0) w.push_back(p.head_unit);
  if (p.head >= 0 && p.head == p.wte) w.push_back(p.embedding_unit);
  for (int64_t l = static_cast<int64_t>(p.layers.size()) - 1; l >= 0; --l)
    w.push_back(p.LayerUnit(l));
  if (p.embedding_unit >= 0) w.push_back(p.embedding_unit);
  return w;
}

// A bucket accumulates from the first write of any of its units until the
// last write of all of them (its reduction is issued then); two buckets whose
// intervals overlap must not share a staging buffer, every bucket fits its
// buffer with its units as in the layout, and each tensor maps into its
// unit's place at the tensor's offset within the unit.
void ExpectSound(const ParamLayout& p, const GradBuckets& buckets, const GradStaging& st) {
  ASSERT_TRUE(st.staged());
  ASSERT_EQ(st.unit_buffer.size(), p.units.size());
  const std::vector<int> writes = BackwardWrites(p);
  const int n = static_cast<int>(buckets.buckets.size());
  std::vector<int> first(n, -1), last(n, -1);
  for (int i = 0; i < static_cast<int>(writes.size()); ++i) {
    const int k = buckets.unit_bucket[writes[i]];
    if (first[k] < 0) first[k] = i;
    last[k] = i;
  }
  for (int a = 0; a < n; ++a) {
    const GradBucket& ka = buckets.buckets[a];
    const int b = st.unit_buffer[ka.units.front()];
    ASSERT_GE(b, 0);
    ASSERT_LT(b, st.buffers());
    EXPECT_LE(ka.size(), BufferCapacity(st, b)) << "bucket " << a;
    EXPECT_EQ(st.buffer_begin[b] % kParamAlignElements, 0);
    for (int u : ka.units) {
      EXPECT_EQ(st.unit_buffer[u], b) << "unit " << u << " of bucket " << a;
      EXPECT_EQ(st.UnitOffset(u), st.buffer_begin[b] + (p.units[u].begin - ka.begin)) << u;
    }
    for (int c = a + 1; c < n; ++c) {
      const bool overlap = first[a] <= last[c] && first[c] <= last[a];
      if (overlap) {
        EXPECT_NE(st.unit_buffer[buckets.buckets[c].units.front()], b)
            << "buckets " << a << ", " << c;
      }
    }
  }
  for (const ParamTensor& t : p.tensors) {
    const auto u = std::find_if(p.units.begin(), p.units.end(), [&](const ParamUnit& x) {
      return t.offset >= x.begin && t.offset < x.end;
    });
    const int unit = static_cast<int>(u - p.units.begin());
    EXPECT_EQ(st.Offset(t.offset), st.UnitOffset(unit) + (t.offset - u->begin)) << t.name;
    EXPECT_EQ(st.Offset(t.offset + t.size() - 1), st.Offset(t.offset) + t.size() - 1) << t.name;
  }
}

// gpt-1.3b, tied (the suite's ZeRO-2/3 case): ring slots of the largest layer,
// head unit first in slot 0, layers alternating backwards, the embedding unit
// dedicated because the LM head and the embedding backward both write it.
TEST(GradStagingTest, TiedGptRingsLayersAndDedicatesTheEmbedding) {
  const ParamLayout p = ZooLayout("gpt-1.3b", 2);
  const GradBuckets buckets = Buckets(p, kDefaultGradBucketBytes);  // the units (layers > 100 MB)
  ASSERT_EQ(buckets.buckets.size(), p.units.size());
  const GradStaging st = BuildGradStaging(p, buckets);
  ExpectSound(p, buckets, st);
  EXPECT_EQ(st.slot_elements, MaxLayerUnit(p));
  ASSERT_EQ(st.buffers(), 3);
  EXPECT_EQ(st.unit_buffer[p.embedding_unit], 2);
  EXPECT_EQ(st.unit_buffer[p.head_unit], 0);
  const int64_t L = static_cast<int64_t>(p.layers.size());
  for (int64_t l = 0; l < L; ++l)  // layer L-1 is the 2nd ring unit of the backward
    EXPECT_EQ(st.unit_buffer[p.LayerUnit(l)], static_cast<int>((L - l) % 2)) << l;
  EXPECT_EQ(st.total_elements, 2 * MaxLayerUnit(p) + p.units[p.embedding_unit].size());
  // The point of staging: far less than the whole layout (0.16 of it here).
  EXPECT_LT(st.total_elements * 5, p.total);
}

// A tied embedding narrower than a layer would fit a ring slot, but the LM head
// writes it before the layers and the embedding backward after them: it gets
// its own buffer anyway.
TEST(GradStagingTest, TiedEmbeddingIsDedicatedEvenWhenItFitsASlot) {
  const ParamLayout p = Layout(TinyBytes(), 2);
  ASSERT_LT(p.units[p.embedding_unit].size(), MaxLayerUnit(p));
  const GradStaging st = UnitStaging(p);
  ExpectSound(p, Buckets(p, 1), st);
  ASSERT_EQ(st.buffers(), 3);
  EXPECT_EQ(st.unit_buffer[p.embedding_unit], 2);
  EXPECT_EQ(st.total_elements, 2 * MaxLayerUnit(p) + p.units[p.embedding_unit].size());
}

// llama-2-7b, untied, embedding and head narrower than a layer: everything
// rides the ring, the embedding unit last (after layer 0, in the other slot).
TEST(GradStagingTest, UntiedLlamaPutsEveryUnitOnTheRing) {
  const ParamLayout p = ZooLayout("llama-2-7b", 4);
  const GradStaging st = UnitStaging(p);
  ExpectSound(p, Buckets(p, 1), st);
  EXPECT_EQ(st.buffers(), 2);
  EXPECT_EQ(st.total_elements, 2 * MaxLayerUnit(p));
  EXPECT_NE(st.unit_buffer[p.embedding_unit], st.unit_buffer[p.LayerUnit(0)]);
  EXPECT_NE(st.unit_buffer[p.head_unit], st.unit_buffer[p.LayerUnit(p.layers.size() - 1)]);
}

// A vocabulary wider than a layer: the untied embedding and head each get a
// dedicated buffer of their own size, the ring holds layers only.
TEST(GradStagingTest, UnitsWiderThanALayerGetTheirOwnBuffer) {
  ModelSpec m = *ZooModel("llama-2-7b");
  m.layers = 4;
  m.vocab = 256000;  // head 256000 x 4096 > a 202 M-element layer
  const ParamLayout p = Layout(m, 2);
  ASSERT_GT(p.units[p.head_unit].size(), MaxLayerUnit(p));
  const GradStaging st = UnitStaging(p);
  ExpectSound(p, Buckets(p, 1), st);
  ASSERT_EQ(st.buffers(), 4);
  EXPECT_EQ(st.unit_buffer[p.embedding_unit], 2);  // dedicated buffers in unit order
  EXPECT_EQ(st.unit_buffer[p.head_unit], 3);
  EXPECT_EQ(st.unit_buffer[p.LayerUnit(3)], 0);  // the first ring unit of the backward
  EXPECT_EQ(st.total_elements,
            2 * MaxLayerUnit(p) + p.units[p.embedding_unit].size() + p.units[p.head_unit].size());
}

// Small units share buckets: tiny-gpt2-bytes (layers of 0.79 M elements, the
// tied embedding 0.33 M) at 7 MB is {head, layer 3, layer 2}, {layer 1,
// layer 0}, {embedding}: the first two ride the ring (slot: the larger, the
// one with the head), the embedding's bucket is dedicated; at 100 MB the one
// bucket holds the tied embedding and is dedicated, the ring is empty.
TEST(GradStagingTest, BucketsOfSeveralUnitsShareOneBuffer) {
  const ParamLayout p = Layout(TinyBytes(), 2);
  const GradBuckets b7 = Buckets(p, 7'000'000);
  ASSERT_EQ(b7.buckets.size(), 3u);
  const GradStaging st = BuildGradStaging(p, b7);
  ExpectSound(p, b7, st);
  EXPECT_EQ(st.slot_elements, b7.buckets[0].size());
  EXPECT_EQ(st.unit_buffer[p.head_unit], 0);
  EXPECT_EQ(st.unit_buffer[p.LayerUnit(0)], 1);
  EXPECT_EQ(st.unit_buffer[p.embedding_unit], 2);
  EXPECT_EQ(st.total_elements, 2 * b7.buckets[0].size() + p.units[p.embedding_unit].size());
  const GradBuckets all = Buckets(p, kDefaultGradBucketBytes);
  ASSERT_EQ(all.buckets.size(), 1u);
  const GradStaging one = BuildGradStaging(p, all);
  ExpectSound(p, all, one);
  EXPECT_EQ(one.slot_elements, 0);
  EXPECT_EQ(one.buffers(), 3);
  EXPECT_EQ(one.total_elements, p.total);
}

// Two micro-batches of DP ranks on CPU, each unit's writes added into its
// staging buffer through Offset (as Model::G); when a bucket's last unit is
// complete (its last write of the micro-batch: DataParallel::GradsReady) each
// of the bucket's units is reduce-scattered in place (rank d's block at its
// slice's place in the unit), added to the shard, and the bucket re-zeroed,
// as DataParallel::LaunchBucket does: every shard equals its owned slices of
// the whole-layout gradient sum (exact: small integers), and the staging ends
// all zero. With the tied embedding written before and after the layers, a
// buffer shared with a layer would lose its first part. Buckets of single
// units, of several units and of the whole model.
TEST(GradStagingTest, StagedReduceScatterEqualsTheWholeBufferReduction) {
  const int dp = 2;
  const ParamLayout p = Layout(TinyBytes(), dp);
  ASSERT_EQ(p.head, p.wte);  // tied
  std::vector<ZeroLayout> z;
  for (int r = 0; r < dp; ++r) z.push_back(*BuildZeroLayout(p, 2, dp, r));
  const std::vector<int> writes = BackwardWrites(p);
  for (int64_t bytes : {int64_t{1}, int64_t{7'000'000}, kDefaultGradBucketBytes}) {
    SCOPED_TRACE(bytes);
    const GradBuckets buckets = Buckets(p, bytes);
    const GradStaging st = BuildGradStaging(p, buckets);
    std::vector<std::vector<float>> staging(dp, std::vector<float>(st.total_elements, 0.0f));
    std::vector<std::vector<float>> shard(dp, std::vector<float>(z[0].local_numel, 0.0f));
    std::vector<float> whole(p.total, 0.0f);
    for (int micro = 0; micro < 2; ++micro) {
      std::vector<int> incomplete;
      for (const GradBucket& k : buckets.buckets)
        incomplete.push_back(static_cast<int>(k.units.size()));
      for (size_t w = 0; w < writes.size(); ++w) {
        const int unit = writes[w];
        const ParamUnit& u = p.units[unit];
        for (int r = 0; r < dp; ++r)
          for (const ParamTensor& t : p.tensors) {
            if (t.offset < u.begin || t.offset >= u.end) continue;
            for (int64_t i = t.offset; i < t.offset + t.size(); ++i) {
              const float g = static_cast<float>(
                  (i * 7 + r * 13 + static_cast<int64_t>(w) * 5 + micro * 3) % 17 - 8);
              staging[r][st.Offset(i)] += g;
              whole[i] += g;
            }
          }
        if (std::find(writes.begin() + w + 1, writes.end(), unit) != writes.end()) continue;
        const int kb = buckets.unit_bucket[unit];
        if (--incomplete[kb] > 0) continue;
        const GradBucket& k = buckets.buckets[kb];
        for (int ku : k.units) {
          const int64_t base = st.UnitOffset(ku);
          for (int d = 0; d < dp; ++d) {
            const OwnedSlice& s = z[d].slices[ku];
            for (int64_t i = 0; i < s.size(); ++i) {
              float sum = 0.0f;
              for (int r = 0; r < dp; ++r)
                sum += staging[r][base + (s.begin - p.units[ku].begin) + i];
              shard[d][s.local + i] += sum;
            }
          }
        }
        const int64_t base = st.UnitOffset(k.units.back());
        for (int r = 0; r < dp; ++r)
          std::fill(staging[r].begin() + base, staging[r].begin() + base + k.size(), 0.0f);
      }
      for (int left : incomplete) EXPECT_EQ(left, 0);
    }
    for (int d = 0; d < dp; ++d) {
      for (const OwnedSlice& s : z[d].slices)
        for (int64_t i = 0; i < s.size(); ++i)
          ASSERT_EQ(shard[d][s.local + i], whole[s.begin + i])
              << "rank " << d << " elem " << s.begin + i;
      EXPECT_EQ(std::count(staging[d].begin(), staging[d].end(), 0.0f), st.total_elements);
    }
  }
}

// The arena with staging: the whole-layout gradient region is empty, the
// gradients term is the shard alone, and the staging region (term buffers) is
// exactly GradStaging::total_elements fp32 - gpt-1.3b saves ~4.1 GiB per GPU.
TEST(GradStagingTest, MemoryPlanChargesShardAsGradientsAndStagingAsBuffers) {
  auto m = ZooModel("gpt-1.3b");
  const int dp = 2;
  ParallelContext ctx = SingleGpuContext(*m);
  auto s = ShardShape(*m, ctx);
  const ParamLayout p = Layout(*m, dp);
  const ZeroLayout z = *BuildZeroLayout(p, 2, dp, 0);
  const GradStaging st = BuildGradStaging(p, Buckets(p, kDefaultGradBucketBytes));
  TrainingShape shape;
  shape.micro_batch = 4;
  shape.seq = 2048;
  ParamStateSizes full{z.local_numel, 0, 0};                                // ZeRO-1
  ParamStateSizes staged{z.local_numel, z.local_numel, st.total_elements};  // ZeRO-2/3
  auto a = PlanTrainingMemory(*m, *s, p, shape, 32 << 20, full);
  auto b = PlanTrainingMemory(*m, *s, p, shape, 32 << 20, staged);
  ASSERT_TRUE(a.ok() && b.ok());
  auto region = [](const TrainingMemoryPlan& plan, const std::string& name) {
    for (const ArenaRegion& r : plan.arena.regions())
      if (r.name == name) return r;
    ADD_FAILURE() << "no region " << name;
    return ArenaRegion();
  };
  auto aligned = [](int64_t bytes) {
    return (bytes + kArenaAlignBytes - 1) / kArenaAlignBytes * kArenaAlignBytes;
  };
  EXPECT_EQ(region(*a, "gradients (fp32)").bytes, p.total * 4);
  EXPECT_EQ(region(*b, "gradients (fp32)").bytes, 0);
  EXPECT_EQ(region(*b, "gradient shard (fp32)").bytes, z.local_numel * 4);
  const ArenaRegion staging = region(*b, "gradient staging (fp32)");
  EXPECT_EQ(staging.term, RegionTerm::kBuffers);
  EXPECT_EQ(staging.bytes, st.total_elements * 4);
  EXPECT_EQ(b->arena.TermBytes(RegionTerm::kGradients), aligned(z.local_numel * 4));
  EXPECT_EQ(b->arena.TermBytes(RegionTerm::kBuffers) - a->arena.TermBytes(RegionTerm::kBuffers),
            aligned(st.total_elements * 4));
  EXPECT_EQ(a->arena.total_bytes() - b->arena.total_bytes(),
            aligned(p.total * 4) - aligned(z.local_numel * 4) - aligned(st.total_elements * 4));
  EXPECT_EQ(b->grad_staging, staging.offset);
}

}  // namespace
}  // namespace p3d
