// MoE layer terms of the compute model (docs/time-model.md, "MoE layers and
// expert parallelism"): the token shuffles of the dispatch, priced as
// memory-bound kernels at their own sizes.
#include <gtest/gtest.h>

#include "models/zoo.h"
#include "simulator/compute_model.h"
#include "simulator/hardware.h"

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

}  // namespace
}  // namespace p3d
