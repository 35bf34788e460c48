// MoE layer terms of the compute and time models (docs/time-model.md, "MoE
// layers and expert parallelism"): the token shuffles of the dispatch, priced
// as memory-bound kernels at their own sizes; ZeRO-3's gathers with EP; the
// EP all-to-all overlap.
#include <gtest/gtest.h>

#include <algorithm>

#include "models/zoo.h"
#include "simulator/comm_model.h"
#include "simulator/compute_model.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

// Qwen3-30B-A3B (128 experts, top-8, H 2048) on an H100, micro-batch 2 x 4096.
struct Qwen3Moe {
  ModelSpec model = ZooModel("qwen3-30b-a3b").value();
  GpuSpec gpu = CatalogCluster("h100-sxm").value().gpu;
  TrainingSpec training;
  Qwen3Moe() { training.seq = 4096; }
  LayerKernelTimes Layer(int ep, Derivation* why = nullptr) const {
    ComputeShape shape;
    shape.micro_batch = 2;
    shape.ep = ep;
    return LayerKernels(model, LayerKind{true, false}, training, gpu, shape, why);
  }
  double RoutedBytes(double k) const {  // T*k*H*a of one micro-batch
    return 2.0 * 4096 * k * static_cast<double>(model.hidden) * training.precision.activation_bytes;
  }
};

TEST(MoeShuffle, AllToAllDispatchSortsTheReceivedTokensByLocalExpert) {
  const Qwen3Moe q;
  // EP 1 (no all-to-all) and EP 128 (one local expert) sort nothing; EP 8
  // (16 local experts) sorts the T*k received tokens and unsorts them before
  // the combine: 2 kernels of 2*T*k*H*a in each pass.
  const LayerKernelTimes one = q.Layer(1), single = q.Layer(128), eight = q.Layer(8);
  EXPECT_DOUBLE_EQ(one.forward.memory_s, single.forward.memory_s);
  const double sorts = 2 * MemoryBoundSeconds(q.gpu, 2 * q.RoutedBytes(8));
  EXPECT_NEAR(eight.forward.memory_s - one.forward.memory_s, sorts, 1e-12);
  EXPECT_NEAR(eight.backward.memory_s - one.backward.memory_s, sorts, 1e-12);
  // --explain records the bytes of each kernel and the pass's seconds.
  Derivation why;
  q.Layer(8, &why);
  EXPECT_DOUBLE_EQ(why.ValueOf("layer.moe.sort_bytes"), 2 * q.RoutedBytes(8));
  EXPECT_DOUBLE_EQ(why.ValueOf("layer.moe.permute_bytes"), 2 * q.RoutedBytes(8));
  EXPECT_NEAR(why.ValueOf("layer.moe.shuffle"), 2 * MemoryBoundSeconds(q.gpu, 2 * q.RoutedBytes(8)) + sorts,
              1e-12);
  Derivation none;
  q.Layer(1, &none);
  EXPECT_EQ(none.ValueOf("layer.moe.sort_bytes"), 0);
}

TEST(MoeShuffle, PermuteMovesEveryRoutedCopy) {
  // Doubling top-k doubles the routed copies the permute and unpermute move
  // (and the activation's inputs); nothing else memory-bound depends on k.
  Qwen3Moe k8, k16;
  k16.model.experts_per_token = 16;
  const double f = static_cast<double>(k8.model.expert_ffn()), a = k8.training.precision.activation_bytes;
  auto kern = [&](double bytes) { return MemoryBoundSeconds(k8.gpu, bytes); };
  const double t = 2.0 * 4096;
  const double act_fwd = kern(t * 16 * f * 3 * a) - kern(t * 8 * f * 3 * a);
  const double act_bwd = kern(t * 16 * f * 5 * a) - kern(t * 8 * f * 5 * a);
  const double permute = 2 * (kern(2 * k8.RoutedBytes(16)) - kern(2 * k8.RoutedBytes(8)));
  EXPECT_NEAR(k16.Layer(1).forward.memory_s - k8.Layer(1).forward.memory_s, act_fwd + permute, 1e-12);
  EXPECT_NEAR(k16.Layer(1).backward.memory_s - k8.Layer(1).backward.memory_s, act_bwd + permute, 1e-12);
}

// ZeRO-3 with expert parallelism: a layer's dense weights are gathered over
// the DP group, its E/EP routed experts over the expert-data-parallel group
// (DP/EP ranks, stride EP) only: none at EP = DP.
double LayerGather(int dp, int ep) {
  const ModelSpec model = ZooModel("qwen3-30b-a3b").value();
  ClusterSpec cluster = CatalogCluster("h100-sxm").value();
  Plan plan;
  plan.dp = dp, plan.ep = ep, plan.zero = 3, plan.micro_batch = 1, plan.grad_accum = 2;
  cluster.num_gpus = plan.gpus();
  TrainingSpec training;
  training.seq = 4096;
  training.global_batch = plan.global_batch();
  auto terms = ExplainTime(model, training, cluster, plan);
  EXPECT_TRUE(terms.ok()) << terms.status().ToString();
  if (!terms.ok()) return -1;
  for (const DerivedTerm& t : *terms)
    if (t.name == "chunk.forward")
      for (const TermInput& in : t.inputs)
        if (std::string_view(in.name) == "g_l") return in.value;
  ADD_FAILURE() << "no chunk.forward g_l";
  return -1;
}

TEST(MoeZero3, ExpertsAreGatheredOverTheExpertDataParallelGroupOnly) {
  const ModelSpec model = ZooModel("qwen3-30b-a3b").value();
  const Network network = CatalogCluster("h100-sxm").value().network;
  const LayerKind moe{true, false};
  const double pb = TrainingSpec{}.precision.param_bytes;
  auto ag = [&](double params, int size, int stride) {
    return CollectiveSeconds(Collective::kAllGather, params * pb, GroupPathFor(network, size, stride));
  };
  // EP 1: the whole layer (all 128 experts) over DP 8.
  EXPECT_NEAR(LayerGather(8, 1), ag(LayerParamsPerGpu(model, moe, 1), 8, 1), 1e-12);
  // EP 8 = DP: each rank keeps its 16 experts whole; only the dense part moves.
  const double experts8 = RoutedExpertParamsPerGpu(model, moe, 1, 8);
  const double dense = LayerParamsPerGpu(model, moe, 1, 8) - experts8;
  EXPECT_NEAR(LayerGather(8, 8), ag(dense, 8, 1), 1e-12);
  // EP 4 of DP 8: 32 experts per rank, sharded over the 2 expert-DP ranks 4 apart.
  const double experts4 = RoutedExpertParamsPerGpu(model, moe, 1, 4);
  EXPECT_NEAR(LayerGather(8, 4), ag(dense, 8, 1) + ag(experts4, 2, 4), 1e-12);
}

// The EP all-to-all overlap (TrainingSpec::ep_a2a_overlap): Qwen3-30B-A3B
// on 8 H100s, DP 8 = EP 8, PP 1, m micro-batches of 2 x 4096 tokens.
struct EpOverlapCase {
  ModelSpec model = ZooModel("qwen3-30b-a3b").value();
  ClusterSpec cluster = CatalogCluster("h100-sxm").value();
  TrainingSpec training;
  Plan plan;
  EpOverlapCase(int zero, int m) {
    plan.dp = 8, plan.ep = 8, plan.zero = zero, plan.micro_batch = 2, plan.grad_accum = m;
    cluster.num_gpus = plan.gpus();
    training.seq = 4096;
    training.global_batch = plan.global_batch();
  }
  TimeBreakdown Time(bool overlap) {
    training.ep_a2a_overlap = overlap;
    auto t = EstimateTime(model, training, cluster, plan);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? t->time : TimeBreakdown{};
  }
  double Term(bool overlap, const char* name) {
    training.ep_a2a_overlap = overlap;
    auto terms = ExplainTime(model, training, cluster, plan);
    EXPECT_TRUE(terms.ok()) << terms.status().ToString();
    if (!terms.ok()) return -1;
    for (const DerivedTerm& t : *terms)
      if (t.name == name) return t.value;
    return -1;
  }
};

// DeepEP (TrainingSpec::ep_deepep): EP 16 over two H100 nodes; a token's 8
// of 128 experts sit on 1.9 of the 2 nodes, so it crosses to the other node
// with d/2 copies on average instead of its 4 (of 8) remote ones.
TEST(MoeDeepEp, DispatchCrossesOncePerDestinationNode) {
  EpOverlapCase c(1, 4);
  c.plan.dp = 16, c.plan.ep = 16;
  c.cluster.num_gpus = c.plan.gpus();
  c.training.global_batch = c.plan.global_batch();
  const GroupPath path = GroupPathFor(c.cluster.network, 16, 1);
  ASSERT_EQ(path.inner_members, 8);
  const double tb = 2.0 * 4096 * static_cast<double>(c.model.hidden) * c.training.precision.activation_bytes;
  const double plain = c.Term(false, "layer.ep_comm.forward");
  EXPECT_NEAR(plain, 2 * AllToAllSeconds(8 * tb, path), 1e-15);
  EXPECT_EQ(c.Term(false, "ep.deepep"), -1);
  c.training.ep_deepep = true;
  const double deepep = c.Term(false, "layer.ep_comm.forward");
  EXPECT_NEAR(deepep, 2 * DeepEpAllToAllSeconds(tb, {128, 8}, path), 1e-15);
  EXPECT_NEAR(c.Term(false, "ep.deepep"), deepep / 2, 1e-15);
  EXPECT_EQ(c.Term(false, "ep.all_to_all"), -1);
  EXPECT_LT(deepep, plain);
  const TimeBreakdown on = c.Time(false);
  c.training.ep_deepep = false;
  EXPECT_LT(on.ep_comm_s, c.Time(false).ep_comm_s);
}

TEST(MoeEpOverlap, SteadyPairsHideTheAllToAllsUnderThePartnersCompute) {
  EpOverlapCase c(1, 4);
  // Without the overlap every pass's dispatch + combine is exposed.
  const TimeBreakdown off = c.Time(false);
  const double ef = c.Term(false, "layer.ep_comm.forward") * c.model.layers;
  const double eb = c.Term(false, "layer.ep_comm.backward") * c.model.layers;
  EXPECT_NEAR(off.ep_comm_s, 4 * (ef + eb), 1e-9);
  // PP 1: the first forward and the last backward of 4 run unpaired.
  EXPECT_DOUBLE_EQ(c.Term(true, "chunk.ep_overlap.unpaired"), 0.25);
  // The all-to-alls of one Qwen3-30B-A3B layer at EP 8 inside a node are
  // shorter than the partner pass's kernels: only the unpaired quarter shows.
  const TimeBreakdown on = c.Time(true);
  EXPECT_NEAR(c.Term(true, "chunk.ep_overlap.forward"), 0.25 * ef, 1e-12);
  EXPECT_NEAR(c.Term(true, "chunk.ep_overlap.backward"), 0.25 * eb, 1e-12);
  EXPECT_NEAR(on.ep_comm_s, 0.25 * off.ep_comm_s, 1e-9);
  EXPECT_NEAR(on.compute_s, off.compute_s, 1e-9);
  EXPECT_LT(on.step_s, off.step_s);
}

TEST(MoeEpOverlap, AllToAllsLongerThanThePartnersComputeStayExposedBeyondIt) {
  // A 25x slower NVLink makes each pass's all-to-alls outlast the partner's
  // kernels: a paired pass shows the excess, ef - bk and eb - fk.
  EpOverlapCase c(1, 4);
  for (NetworkTier& tier : c.cluster.network) tier.link.bytes_per_s /= 25;
  const double ef = c.Term(false, "layer.ep_comm.forward") * c.model.layers;
  const double eb = c.Term(false, "layer.ep_comm.backward") * c.model.layers;
  c.training.ep_a2a_overlap = true;
  auto terms = ExplainTime(c.model, c.training, c.cluster, c.plan);
  ASSERT_TRUE(terms.ok()) << terms.status().ToString();
  double bk = -1, fk = -1, exposed_f = -1, exposed_b = -1;
  for (const DerivedTerm& t : *terms) {
    if (t.name == "chunk.ep_overlap.forward") exposed_f = t.value;
    if (t.name == "chunk.ep_overlap.backward") exposed_b = t.value;
    for (const TermInput& in : t.inputs) {
      if (t.name == "chunk.ep_overlap.forward" && std::string_view(in.name) == "bk") bk = in.value;
      if (t.name == "chunk.ep_overlap.backward" && std::string_view(in.name) == "fk") fk = in.value;
    }
  }
  ASSERT_GT(bk, 0);
  ASSERT_GT(fk, 0);
  ASSERT_GT(ef, bk);
  ASSERT_GT(eb, fk);
  EXPECT_NEAR(exposed_f, 0.25 * ef + 0.75 * (ef - bk), 1e-12);
  EXPECT_NEAR(exposed_b, 0.25 * eb + 0.75 * (eb - fk), 1e-12);
}

TEST(MoeEpOverlap, PlansMegatronRefusesItForKeepTheirAllToAllsExposed) {
  // Full recompute, and PP > 1 without interleaving (EpOverlapRuns).
  EpOverlapCase full(1, 4);
  full.plan.recompute = Recompute::kFull;
  EXPECT_DOUBLE_EQ(full.Time(true).ep_comm_s, full.Time(false).ep_comm_s);
  EXPECT_EQ(full.Term(true, "chunk.ep_overlap.unpaired"), -1);  // not recorded
  EpOverlapCase plain(1, 8);
  plain.plan.dp = 4, plain.plan.ep = 4, plain.plan.pp = 2;
  plain.training.global_batch = plain.plan.global_batch();
  EXPECT_DOUBLE_EQ(plain.Time(true).ep_comm_s, plain.Time(false).ep_comm_s);
  plain.plan.vpp = 2;
  EXPECT_LT(plain.Time(true).ep_comm_s, plain.Time(false).ep_comm_s);
}

TEST(MoeZero3, AllToAllsRunInsideTheGatherChains) {
  // ZeRO-3 with EP = DP (no expert weight gathered): the all-to-alls are part
  // of the chains' layer modules, so the kernels left after the collectives
  // are the same as under ZeRO-1's plain chunks.
  EpOverlapCase z3(3, 4), z1(1, 4);
  const TimeBreakdown a = z3.Time(false), b = z1.Time(false);
  EXPECT_GT(a.ep_comm_s, 0);
  EXPECT_NEAR(a.ep_comm_s, b.ep_comm_s, 1e-9);
  EXPECT_NEAR(a.compute_s, b.compute_s, 1e-6 * b.compute_s);
  // The step holds the kernels and the all-to-alls, and what the chains
  // could not hide is never negative.
  EXPECT_GE(a.step_s, a.compute_s + a.ep_comm_s);
  EXPECT_GE(a.dp_comm_s, 0);
}

}  // namespace
}  // namespace p3d
