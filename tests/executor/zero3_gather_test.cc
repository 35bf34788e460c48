// ZeRO-3 at DP > 1 without a whole-model weight buffer (executor/zero_layout.h
// WeightGather, ZeroBuffers): which gather buffer each unit's weights land in,
// the flat element -> gather element map Model::W uses, that the prefetching
// gather passes of the overlap schedule never overwrite a unit still in use,
// and the arena it costs (executor/memory_plan.h), on CPU.
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

struct Sharded {
  ModelSpec model;
  LocalShape local;
  ParamLayout params;
};

Sharded Make(const ModelSpec& m, int dp) {
  ParallelContext ctx = SingleGpuContext(m);
  auto s = ShardShape(m, ctx);
  EXPECT_TRUE(s.ok());
  auto p = BuildParamLayout(m, ctx, *s, dp * kParamAlignElements);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return {m, *s, *p};
}

ModelSpec Zoo(const char* id) {
  auto m = ZooModel(id);
  EXPECT_TRUE(m.ok()) << id;
  return *m;
}

// The shape gpu_check.sh's DP equivalence runs (tests/executor/models/
// tiny-gpt2-bytes.json): tiny-gpt with a tied byte vocabulary.
ModelSpec TinyBytes() {
  ModelSpec m = Zoo("tiny-gpt");
  m.vocab = 256;
  m.tie_embeddings = true;
  return m;
}

// llama-2-7b (untied) with a vocabulary wider than a layer: the head unit is
// the largest unit.
ModelSpec WideVocabLlama() {
  ModelSpec m = Zoo("llama-2-7b");
  m.layers = 4;
  m.vocab = 256000;
  return m;
}

bool Tied(const ParamLayout& p) { return p.head >= 0 && p.head == p.wte; }

int64_t MaxUnit(const ParamLayout& p, bool skip_tied_embedding) {
  int64_t n = 0;
  for (int u = 0; u < static_cast<int>(p.units.size()); ++u)
    if (!(skip_tied_embedding && Tied(p) && u == p.embedding_unit))
      n = std::max(n, p.units[u].size());
  return n;
}

// Elements buffer b can hold: up to the next buffer, or the region's end.
int64_t Capacity(const UnitRing& g, int b) {
  return (b + 1 < g.buffers() ? g.buffer_begin[b + 1] : g.total_elements) - g.buffer_begin[b];
}

// Every unit fits its buffer (aligned), and each tensor maps contiguously into
// its unit's buffer at the tensor's offset within the unit.
void ExpectMapping(const ParamLayout& p, const UnitRing& g) {
  ASSERT_TRUE(g.staged());
  ASSERT_EQ(g.unit_buffer.size(), p.units.size());
  for (size_t u = 0; u < p.units.size(); ++u) {
    const int b = g.unit_buffer[u];
    ASSERT_GE(b, 0);
    ASSERT_LT(b, g.buffers());
    EXPECT_LE(p.units[u].size(), Capacity(g, b)) << "unit " << u;
    EXPECT_EQ(g.buffer_begin[b] % kParamAlignElements, 0);
  }
  for (const ParamTensor& t : p.tensors) {
    const auto it = std::find_if(p.units.begin(), p.units.end(), [&](const ParamUnit& x) {
      return t.offset >= x.begin && t.offset < x.end;
    });
    ASSERT_NE(it, p.units.end()) << t.name;
    const int unit = static_cast<int>(it - p.units.begin());
    EXPECT_EQ(g.Offset(t.offset), g.UnitOffset(unit) + (t.offset - it->begin)) << t.name;
    EXPECT_EQ(g.Offset(t.offset + t.size() - 1), g.Offset(t.offset) + t.size() - 1) << t.name;
  }
}

// The ZeRO-3 gather passes of the overlap schedule (BuildGatherPass, what
// DataParallel::BeforeUse issues) replayed on CPU with every buffer's content
// tracked: before each unit of a pass computes, the gathers its entry lists
// land in their buffers; then the unit's compute reads it. Each read must find
// its unit still in its buffer: the forward reads the embedding unit, the
// layers, the head unit and, in the loss, wte (the embedding unit when tied);
// the backward reads the layers in reverse. Stream order equals this program
// order: a gather waits for the compute enqueued before its BeforeUse
// (DataParallel's ordering). Returns the reads that found their unit
// overwritten.
std::vector<std::string> Overwrites(const ParamLayout& p, const UnitRing& g, int micro_batches) {
  std::vector<int> content(g.buffers(), -1);
  std::vector<std::string> bad;
  auto read = [&](int unit, const std::string& what) {
    if (content[g.unit_buffer[unit]] != unit)
      bad.push_back(what + ": unit " + std::to_string(unit) + " overwritten by " +
                    std::to_string(content[g.unit_buffer[unit]]));
  };
  for (int mb = 0; mb < micro_batches; ++mb) {
    for (Pass pass : {Pass::kForward, Pass::kBackward}) {
      const GatherPass gp = BuildGatherPass(p, pass);
      for (size_t i = 0; i < gp.order.size(); ++i) {
        for (int u : gp.issue[i]) content[g.unit_buffer[u]] = u;
        const int unit = gp.order[i];
        const std::string what = pass == Pass::kBackward    ? "layer backward"
                                 : unit == p.embedding_unit ? "embedding forward"
                                 : unit == p.head_unit      ? "final norm / head"
                                                            : "layer forward";
        read(unit, what);
        if (unit == p.head_unit && Tied(p)) read(p.embedding_unit, "tied LM head");
      }
    }
  }
  return bad;
}

void ExpectUseOrderSafe(const ParamLayout& p, const UnitRing& g, int micro_batches) {
  for (const std::string& b : Overwrites(p, g, micro_batches)) ADD_FAILURE() << b;
}

// gpt-1.3b, tied, DP 2 (the suite's ZeRO-3 case): ring slots of a layer (the
// head unit, the final norm, is smaller), layers alternating, the embedding
// unit dedicated because the embedding and the LM head read it at the two
// ends of the forward.
TEST(Zero3GatherTest, TiedGptRingsLayersAndDedicatesTheEmbedding) {
  const Sharded s = Make(Zoo("gpt-1.3b"), 2);
  const ParamLayout& p = s.params;
  const UnitRing g = BuildWeightGather(p);
  ExpectMapping(p, g);
  ExpectUseOrderSafe(p, g, 2);
  EXPECT_EQ(g.slot_elements, MaxUnit(p, true));
  ASSERT_EQ(g.buffers(), 3);
  EXPECT_EQ(g.unit_buffer[p.embedding_unit], 2);
  EXPECT_EQ(g.total_elements, 2 * MaxUnit(p, true) + p.units[p.embedding_unit].size());
  // The point: ring + embedding are far less than the whole model (0.16 of it).
  EXPECT_LT(g.total_elements * 5, p.total);
}

// The tied byte-vocabulary model of gpt_check.sh: the embedding unit fits a
// slot but is still dedicated (in the ring, a layer would overwrite it before
// the LM head reads it: the use-order check fails then).
TEST(Zero3GatherTest, TiedEmbeddingIsDedicatedEvenWhenItFitsASlot) {
  const Sharded s = Make(TinyBytes(), 2);
  const ParamLayout& p = s.params;
  ASSERT_LT(p.units[p.embedding_unit].size(), MaxUnit(p, true));
  const UnitRing g = BuildWeightGather(p);
  ExpectMapping(p, g);
  ExpectUseOrderSafe(p, g, 3);
  ASSERT_EQ(g.buffers(), 3);
  EXPECT_EQ(g.unit_buffer[p.embedding_unit], 2);
  EXPECT_EQ(g.total_elements, 2 * MaxUnit(p, true) + p.units[p.embedding_unit].size());
}

// Untied: every unit rides the ring, whose slots are the largest unit (here
// the head, wider than a layer), so the ring is 2 x max(layer, embedding, head)
// as the simulator's buffers.zero3_gather charges.
TEST(Zero3GatherTest, UntiedModelsPutEveryUnitOnTheRing) {
  for (const ModelSpec& m : {Zoo("llama-2-7b"), WideVocabLlama()}) {
    const Sharded s = Make(m, 4);
    const ParamLayout& p = s.params;
    const UnitRing g = BuildWeightGather(p);
    ExpectMapping(p, g);
    ExpectUseOrderSafe(p, g, 2);
    EXPECT_EQ(g.buffers(), 2) << m.name;
    EXPECT_EQ(g.total_elements, 2 * MaxUnit(p, false)) << m.name;
  }
  const ParamLayout p = Make(WideVocabLlama(), 4).params;
  EXPECT_GT(p.units[p.head_unit].size(), p.units[p.LayerUnit(0)].size());
}

// The use-order check can fail: two neighbours in the use order sharing a
// slot (the prefetch overwrites the unit in use), or a tied embedding on the
// ring (a layer overwrites it before the LM head reads it).
TEST(Zero3GatherTest, UseOrderCheckCatchesAnOverwrite) {
  const ParamLayout p = Make(TinyBytes(), 2).params;
  UnitRing shared = BuildWeightGather(p);
  shared.unit_buffer[p.LayerUnit(1)] = shared.unit_buffer[p.LayerUnit(0)];
  const std::vector<std::string> a = Overwrites(p, shared, 1);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0].rfind("layer forward: unit " + std::to_string(p.LayerUnit(0)), 0), 0u) << a[0];
  UnitRing ringed = BuildWeightGather(p);
  ringed.unit_buffer[p.embedding_unit] = 1 - ringed.unit_buffer[p.LayerUnit(0)];
  const std::vector<std::string> b = Overwrites(p, ringed, 1);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].rfind("tied LM head", 0), 0u) << b[0];
}

// The weight state ZeRO-3 plans (ZeroBuffers, what Model::Create plans): the
// weights term is the shard, the "ZeRO-3 gather (bf16)" buffer is the ring;
// ZeRO-0/1/2 keep the whole-layout weights and no gather region.
TEST(Zero3GatherTest, MemoryPlanHoldsTheShardAndTheRing) {
  const Sharded s = Make(Zoo("gpt-1.3b"), 2);
  const ParamLayout& p = s.params;
  TrainingShape shape;
  shape.micro_batch = 1;
  shape.seq = 1024;
  auto region = [](const TrainingMemoryPlan& plan, const std::string& name) {
    for (const ArenaRegion& r : plan.arena.regions())
      if (r.name == name) return r;
    ADD_FAILURE() << "no region " << name;
    return ArenaRegion{};
  };
  for (int zero = 0; zero <= 3; ++zero) {
    auto z = BuildZeroLayout(p, zero, 2, 1);
    ASSERT_TRUE(z.ok());
    const ZeroBuffers b = BuildZeroBuffers(p, *z, *BuildGradBuckets(p, kDefaultGradBucketBytes),
                                           /*offload_optimizer=*/false);
    auto plan = PlanTrainingMemory(s.model, s.local, p, shape, 1 << 20, b.sizes);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    const ArenaRegion w = region(*plan, "weights (bf16)");
    const ArenaRegion ring = region(*plan, "ZeRO-3 gather (bf16)");
    EXPECT_EQ(w.term, RegionTerm::kWeights);
    EXPECT_EQ(ring.term, RegionTerm::kBuffers);
    if (zero < 3) {
      EXPECT_FALSE(b.gather.staged());
      EXPECT_EQ(w.bytes, p.total * 2) << zero;
      EXPECT_EQ(ring.bytes, 0) << zero;
      continue;
    }
    EXPECT_EQ(w.bytes, p.total / 2 * 2);  // the 1/DP shard
    EXPECT_EQ(z->local_numel, p.total / 2);
    EXPECT_EQ(ring.bytes,
              (2 * MaxUnit(p, true) + p.units[p.embedding_unit].size()) * 2);  // + tied embedding
    EXPECT_EQ(plan->arena.TermBytes(RegionTerm::kWeights), w.bytes);
  }
  // DP = 1: nothing to gather, ZeRO-3 keeps the whole layout.
  auto z1 = BuildZeroLayout(p, 3, 1, 0);
  ASSERT_TRUE(z1.ok());
  const ZeroBuffers b1 =
      BuildZeroBuffers(p, *z1, *BuildGradBuckets(p, kDefaultGradBucketBytes), false);
  EXPECT_FALSE(b1.gather.staged());
  EXPECT_EQ(b1.sizes.weight_elements, -1);
}

}  // namespace
}  // namespace p3d
