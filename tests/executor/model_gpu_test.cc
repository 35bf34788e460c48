// Whole-model properties on a tiny shape of each architecture, with each
// attention core (fused: cuDNN flash attention, the default; unfused):
//  - recompute none / selective / full compute bit-identical gradients (the
//    recomputed tensors are the same deterministic functions of stored ones);
//  - two models built from the same seed train bit-identically (no atomics in
//    p3d's kernels; the fused backward's fp32 dQ accumulation over key tiles
//    is order-independent at S = 128, docs/executor.md);
//  - checkpoint save -> load -> continue reproduces the uninterrupted losses.
// Agreement with an independent implementation is reference.py's job (gpu_check.sh).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "executor/checkpoint.h"
#include "executor/data.h"
#include "executor/model.h"

namespace p3d {
namespace {

ModelSpec Tiny(Arch arch) {
  ModelSpec m;
  m.name = arch == Arch::kGpt2 ? "tiny-gpt2-test" : "tiny-llama-test";
  m.arch = arch;
  m.layers = 2;
  m.hidden = 128;
  m.heads = 2;  // HD = 64, as the fused core supports
  m.kv_heads = arch == Arch::kGpt2 ? 2 : 1;
  m.ffn = arch == Arch::kGpt2 ? 512 : 256;
  m.vocab = 97;
  m.max_positions = 128;
  m.tie_embeddings = arch == Arch::kGpt2;
  return m;
}

constexpr int64_t kB = 2, kS = 128;  // S: the fused core's multiple of 128 (cuDNN <= 9.15)

// B=2, S=128, logits chunk 24 (not dividing T=256: a short last chunk), 4
// causal attention blocks of 32 positions (unfused) unless told otherwise.
std::unique_ptr<Model> Build(const ModelSpec& spec, Recompute rc, AttentionImpl attention,
                             int64_t attention_blocks = 4, bool gemm_epilogues = false) {
  ModelConfig c;
  c.spec = spec;
  c.gemm_epilogues = gemm_epilogues;
  c.parallel = SingleGpuContext(spec);
  c.shape = {kB, kS, rc, 24, attention_blocks};
  c.shape.attention = attention;
  auto m = Model::Create(c, nullptr);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// Runs `steps` optimizer steps of 2 micro-batches from step `first`; returns losses.
std::vector<float> TrainSteps(Model& model, int64_t first, int steps, int64_t* adam_steps) {
  auto data = MakeSyntheticSource(5, model.config().spec.vocab, {kB, kS, 2});
  EXPECT_TRUE(data.ok());
  std::vector<float> losses;
  std::vector<int32_t> tok, tgt;
  for (int s = 0; s < steps; ++s) {
    EXPECT_TRUE(model.ZeroGrads().ok());
    for (int micro = 0; micro < 2; ++micro) {
      EXPECT_TRUE((*data)->Batch(first + s, micro, &tok, &tgt).ok());
      Status st = model.TrainMicroBatch(tok, tgt, 1.0f / (2 * kB * kS), nullptr, nullptr);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
    AdamWHyper h;
    h.lr = 1e-2f;
    h.weight_decay = 0.1f;
    h.step = ++*adam_steps;
    EXPECT_TRUE(model.OptimizerStep(h, 1.0f, nullptr).ok());
    auto sc = model.ReadScalars();
    EXPECT_TRUE(sc.ok());
    losses.push_back(sc->loss_sum / (2 * kB * kS));
  }
  return losses;
}

std::vector<float> Grads(Model& model) {
  std::vector<float> g(model.params().total);
  EXPECT_TRUE(model.CopyOut(ParamBuffer::kGrads, g.data()).ok());
  return g;
}

// Loss per token of one micro-batch and the gradients after `micro_batches`
// micro-batches of the fixed test batch (data seed 9) from seed-3 weights.
struct Trained {
  float loss = 0;
  std::vector<float> grads;
};
Trained TrainFixedBatch(Model& model, int micro_batches) {
  Trained t;
  EXPECT_TRUE(model.InitParameters(3).ok());
  auto data = MakeSyntheticSource(9, model.config().spec.vocab, {kB, kS, 1});
  EXPECT_TRUE(data.ok());
  std::vector<int32_t> tok, tgt;
  EXPECT_TRUE((*data)->Batch(0, 0, &tok, &tgt).ok());
  for (int i = 0; i < micro_batches; ++i)
    EXPECT_TRUE(model.TrainMicroBatch(tok, tgt, 1.0f / (kB * kS), nullptr, nullptr).ok());
  auto sc = model.ReadScalars();
  EXPECT_TRUE(sc.ok());
  if (sc.ok()) t.loss = sc->loss_sum / (kB * kS);
  t.grads = Grads(model);
  return t;
}

// Relative L2 distance of `a` from `ref`.
double RelDiff(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (static_cast<double>(a[i]) - ref[i]) * (a[i] - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

class ModelTest : public ::testing::TestWithParam<std::tuple<Arch, AttentionImpl>> {
 protected:
  ModelSpec Spec() const { return Tiny(std::get<0>(GetParam())); }
  AttentionImpl Attention() const { return std::get<1>(GetParam()); }
};

TEST_P(ModelTest, RecomputeModesGiveBitIdenticalGradients) {
  const ModelSpec spec = Spec();
  std::vector<std::vector<float>> grads;
  std::vector<float> losses;
  for (Recompute rc : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    auto model = Build(spec, rc, Attention());
    ASSERT_TRUE(model);
    ASSERT_TRUE(model->InitParameters(3).ok());
    auto data = MakeSyntheticSource(9, spec.vocab, {kB, kS, 1});
    std::vector<int32_t> tok, tgt;
    ASSERT_TRUE((*data)->Batch(0, 0, &tok, &tgt).ok());
    ASSERT_TRUE(model->TrainMicroBatch(tok, tgt, 1.0f / (kB * kS), nullptr, nullptr).ok());
    auto sc = model->ReadScalars();
    ASSERT_TRUE(sc.ok());
    losses.push_back(sc->loss_sum);
    grads.push_back(Grads(*model));
  }
  // The gradient is non-trivial: every parameter tensor received some gradient.
  double norm = 0;
  for (float g : grads[0]) norm += static_cast<double>(g) * g;
  EXPECT_GT(norm, 0.0);
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(losses[0], losses[2]);
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * 4), 0) << "selective";
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[2].data(), grads[0].size() * 4), 0) << "full";
}

// Causal blocking skips only masked (zero) products, so blocked and full-square
// attention agree up to summation order (unfused core; the fused one has no
// blocks); the fused core agrees with both to bf16 rounding.
TEST_P(ModelTest, CausalBlockingMatchesTheFullSquare) {
  if (Attention() == AttentionImpl::kFused) GTEST_SKIP() << "unfused core only";
  const ModelSpec spec = Spec();
  std::vector<std::vector<float>> grads;
  for (int64_t blocks : {1, 4}) {
    auto model = Build(spec, Recompute::kNone, AttentionImpl::kUnfused, blocks);
    ASSERT_TRUE(model);
    EXPECT_EQ(model->memory().attention_blocks, blocks);
    grads.push_back(TrainFixedBatch(*model, 1).grads);
  }
  EXPECT_LT(RelDiff(grads[1], grads[0]), 1e-2);  // bf16 activations: rounding-level differences
}

TEST_P(ModelTest, EveryParameterTensorGetsAGradient) {
  const ModelSpec spec = Spec();
  auto model = Build(spec, Recompute::kNone, Attention());
  ASSERT_TRUE(model);
  ASSERT_TRUE(model->InitParameters(3).ok());
  int64_t adam = 0;
  TrainSteps(*model, 0, 1, &adam);  // one step, so biases/zero-init tensors move off zero
  ASSERT_TRUE(model->ZeroGrads().ok());
  auto data = MakeSyntheticSource(9, spec.vocab, {kB, kS, 1});
  std::vector<int32_t> tok, tgt;
  ASSERT_TRUE((*data)->Batch(0, 0, &tok, &tgt).ok());
  ASSERT_TRUE(model->TrainMicroBatch(tok, tgt, 1.0f / (kB * kS), nullptr, nullptr).ok());
  auto g = Grads(*model);
  for (const ParamTensor& t : model->params().tensors) {
    double sq = 0;
    for (int64_t i = 0; i < t.size(); ++i)
      sq += static_cast<double>(g[t.offset + i]) * g[t.offset + i];
    EXPECT_GT(sq, 0.0) << t.name;
  }
}

TEST_P(ModelTest, SameSeedTrainsBitIdenticallyAndLossFalls) {
  const ModelSpec spec = Spec();
  std::vector<std::vector<float>> runs;
  for (int r = 0; r < 2; ++r) {
    auto model = Build(spec, Recompute::kSelective, Attention());
    ASSERT_TRUE(model);
    ASSERT_TRUE(model->InitParameters(11).ok());
    int64_t adam = 0;
    runs.push_back(TrainSteps(*model, 0, 4, &adam));
  }
  EXPECT_EQ(runs[0], runs[1]);
  for (float l : runs[0]) EXPECT_TRUE(std::isfinite(l));
}

TEST_P(ModelTest, CheckpointContinuesBitIdentically) {
  const ModelSpec spec = Spec();
  auto a = Build(spec, Recompute::kNone, Attention());
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->InitParameters(21).ok());
  int64_t adam_a = 0;
  std::vector<float> full = TrainSteps(*a, 0, 5, &adam_a);

  auto b = Build(spec, Recompute::kNone, Attention());
  ASSERT_TRUE(b->InitParameters(21).ok());
  int64_t adam_b = 0;
  TrainSteps(*b, 0, 3, &adam_b);
  const std::string path = ::testing::TempDir() + "/p3d_model_test.ckpt";
  ASSERT_TRUE(SaveCheckpoint(path, *b, {3, adam_b, 21}).ok());

  auto c = Build(spec, Recompute::kNone, Attention());
  auto info = LoadCheckpoint(path, *c);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->step, 3);
  int64_t adam_c = info->adam_steps;
  std::vector<float> tail = TrainSteps(*c, info->step, 2, &adam_c);
  EXPECT_EQ(tail[0], full[3]);
  EXPECT_EQ(tail[1], full[4]);
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    ArchAndAttention, ModelTest,
    ::testing::Combine(::testing::Values(Arch::kGpt2, Arch::kLlama),
                       ::testing::Values(AttentionImpl::kFused, AttentionImpl::kUnfused)),
    [](const auto& info) {
      return std::string(ArchName(std::get<0>(info.param))) + "_" +
             AttentionImplName(std::get<1>(info.param));
    });

// The two attention cores train the same model to the same gradients, up to
// bf16 rounding of the attention internals.
TEST(ModelAttentionTest, FusedAndUnfusedGradientsAgree) {
  for (Arch arch : {Arch::kGpt2, Arch::kLlama}) {
    const ModelSpec spec = Tiny(arch);
    std::vector<Trained> runs;
    for (AttentionImpl a : {AttentionImpl::kFused, AttentionImpl::kUnfused}) {
      auto model = Build(spec, Recompute::kNone, a);
      ASSERT_TRUE(model);
      runs.push_back(TrainFixedBatch(*model, 1));
    }
    const double rel = RelDiff(runs[0].grads, runs[1].grads);
    std::printf("%s: loss fused %.6f unfused %.6f, gradient rel diff %.2e\n", ArchName(arch),
                runs[0].loss, runs[1].loss, rel);
    EXPECT_NEAR(runs[0].loss, runs[1].loss, 2e-3) << ArchName(arch);
    EXPECT_LT(rel, 2e-2) << ArchName(arch);
  }
}

// GPT-2 with the GELU, GELU-gradient and bias-gradient epilogues
// (ModelConfig::gemm_epilogues) trains to the separate kernels' loss and
// gradients up to bf16 rounding (the epilogues skip one bf16 rounding of the
// pre-activation and of the GELU's input gradient), and its recompute modes
// stay bit-identical (the epilogue GEMMs are as deterministic as the others).
TEST(ModelEpilogueTest, GemmEpiloguesAgreeWithTheSeparateKernels) {
  const ModelSpec spec = Tiny(Arch::kGpt2);
  std::vector<Trained> runs;
  const std::pair<bool, Recompute> kRuns[] = {
      {false, Recompute::kNone}, {true, Recompute::kNone}, {true, Recompute::kFull}};
  for (const auto& [epilogues, rc] : kRuns) {
    auto model = Build(spec, rc, AttentionImpl::kFused, 4, epilogues);
    ASSERT_TRUE(model);
    runs.push_back(TrainFixedBatch(*model, 2));  // two micro-batches: bias gradients accumulate
  }
  const double rel = RelDiff(runs[1].grads, runs[0].grads);
  std::printf("epilogues: loss %.6f vs kernels %.6f, gradient rel diff %.2e\n", runs[1].loss,
              runs[0].loss, rel);
  EXPECT_NEAR(runs[1].loss, runs[0].loss, 2e-3);
  EXPECT_LT(rel, 2e-2);
  EXPECT_EQ(runs[1].loss, runs[2].loss);
  EXPECT_EQ(std::memcmp(runs[1].grads.data(), runs[2].grads.data(), runs[1].grads.size() * 4), 0)
      << "full recompute";
}

// TP and PP need their communicators (p3d-run builds them); MoE is not executable.
TEST(ModelCreateTest, RefusesModelParallelWithoutCommunicatorsAndMoe) {
  ModelSpec spec = Tiny(Arch::kLlama);
  ModelConfig c;
  c.spec = spec;
  c.parallel = SingleGpuContext(spec);
  c.parallel.tp = 2;
  c.shape = {1, kS, Recompute::kNone, 0, 0};
  auto m = Model::Create(c, nullptr);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("needs the TP, PP and MP communicators"), std::string::npos)
      << m.status().message();
  spec.experts = 4;
  spec.experts_per_token = 2;
  c.spec = spec;
  c.parallel = SingleGpuContext(spec);
  m = Model::Create(c, nullptr);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("dense"), std::string::npos);
}

}  // namespace
}  // namespace p3d
