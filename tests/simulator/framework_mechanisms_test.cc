// Each mechanism of a framework profile (common/framework.h) moves memory or
// time the way its documentation says, on one plan with everything else
// fixed: overlaps hide communication, buffers appear or vanish, the
// selective-recompute policies store and re-run what they name.
#include <gtest/gtest.h>

#include <cmath>

#include "models/zoo.h"
#include "simulator/attention_kernels.h"
#include "simulator/compute_model.h"
#include "simulator/framework_profile.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

struct Case {
  ModelSpec model = ZooModel("llama-2-70b").value();
  TrainingSpec training;
  ClusterSpec cluster = CatalogCluster("a100-80gb").value();  // no interference figure: exposure alone
  Plan plan;
  Case(int dp, int tp, int pp, int zero, bool sp) {
    cluster.num_gpus = dp * tp * pp;
    plan.dp = dp, plan.tp = tp, plan.pp = pp, plan.zero = zero, plan.sequence_parallel = sp;
    plan.micro_batch = 1;
    plan.grad_accum = 8;
    training.global_batch = plan.global_batch();
    training.seq = 4096;
  }
  TimeBreakdown Time() const { return EstimateTime(model, training, cluster, plan).value().time; }
  StageMemoryDetail Memory(int stage = 0) const { return StageMemoryDetails(model, training, cluster, plan, stage); }
};

// 7B on one node: the reduction is shorter than a micro-batch's backward, so
// buckets hide all but the last one.
TEST(FrameworkMechanisms, GradientReduceOverlapHidesTheDataParallelReduction) {
  Case c(8, 1, 1, 0, false);
  c.model = ZooModel("llama-2-7b").value();
  c.plan.micro_batch = 4;
  c.training.global_batch = c.plan.global_batch();
  c.training.framework.grad_reduce_overlap = true;
  const double overlapped = c.Time().dp_comm_s;
  c.training.framework.grad_reduce_overlap = false;
  c.training.framework.grad_reduce_overlap_with_pp = PpGradOverlap::kNone;
  const double exposed = c.Time().dp_comm_s;
  EXPECT_GT(exposed, 10 * overlapped);
  // Larger buckets leave more of the reduction after the backward.
  c.training.framework.grad_reduce_overlap = true;
  c.training.framework.grad_bucket_elements = 4e8;
  const double coarse = c.Time().dp_comm_s;
  EXPECT_GT(coarse, overlapped);
  EXPECT_LE(coarse, exposed);
}

TEST(FrameworkMechanisms, PipelineStagesReduceAfterTheFlushWhenThePolicySaysSo) {
  Case c(8, 4, 4, 1, true);
  c.training.framework.grad_reduce_overlap_with_pp = PpGradOverlap::kAll;
  const double all = c.Time().step_s;
  c.training.framework.grad_reduce_overlap_with_pp = PpGradOverlap::kFirstStage;
  const double first = c.Time().step_s;
  c.training.framework.grad_reduce_overlap_with_pp = PpGradOverlap::kNone;
  const double none = c.Time().step_s;
  EXPECT_LE(all, first);
  EXPECT_LT(first, none);  // stage 0 ends last: its overlap matters most
}

TEST(FrameworkMechanisms, DistributedOptimizerReduceScattersAndOverlapsTheGather) {
  Case c(8, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  c.plan.micro_batch = 4;
  c.training.global_batch = c.plan.global_batch();
  c.training.framework.grad_reduce_overlap = false;
  c.training.framework.grad_reduce_overlap_with_pp = PpGradOverlap::kNone;
  const double all_reduce = c.Time().dp_comm_s;
  c.training.framework.zero_reduce_scatter = true;
  const double reduce_scatter = c.Time().dp_comm_s;
  // fp32 gradients, bf16 parameters: all-reduce (2 x 4 bytes) + all-gather
  // (2 bytes) vs reduce-scatter (4) + all-gather (2) per parameter moved.
  EXPECT_NEAR(reduce_scatter / all_reduce, 6.0 / 10.0, 0.02);
  // The parameter all-gather (a third of it) hides under the next forward.
  c.training.framework.param_gather_overlap = true;
  EXPECT_LT(c.Time().dp_comm_s, 0.7 * reduce_scatter);
}

TEST(FrameworkMechanisms, TensorParallelOverlapHidesCollectivesUnderGemms) {
  Case c(2, 8, 1, 0, true);
  c.training.framework.tp_overlap = TpOverlap::kNone;
  const double none = c.Time().tp_comm_s;
  c.training.framework.tp_overlap = TpOverlap::kAsyncGrad;
  const double async = c.Time().tp_comm_s;
  c.training.framework.tp_overlap = TpOverlap::kUserBuffers;
  const double userbuffers = c.Time().tp_comm_s;
  EXPECT_LT(async, none);
  EXPECT_LT(userbuffers, async);
  EXPECT_GT(userbuffers, 0);  // the pipelined reduce-scatter's last chunk stays exposed
  // Userbuffers need SP: without it the plan gets the async overlap only.
  c.plan.sequence_parallel = false;
  c.training.framework.tp_overlap = TpOverlap::kAsyncGrad;
  const double async_no_sp = c.Time().tp_comm_s;
  c.training.framework.tp_overlap = TpOverlap::kUserBuffers;
  EXPECT_DOUBLE_EQ(c.Time().tp_comm_s, async_no_sp);
  // A collective hidden under a GEMM still slows it (GpuSpec::overlap_slowdown_gemm).
  c.plan.sequence_parallel = true;
  c.cluster.gpu.overlap_slowdown_gemm = 0.36;
  EXPECT_GT(c.Time().tp_comm_s, userbuffers);
}

TEST(FrameworkMechanisms, UserbuffersHoldTenActivationBuffers) {
  Case c(2, 8, 1, 0, true);
  const double bsh = 2.0 * c.plan.micro_batch * c.training.seq * c.model.hidden;
  EXPECT_DOUBLE_EQ(c.Memory().tp_buffers, bsh);  // the SP all-gather buffer
  ApplyFrameworkProfile(LoadFrameworkProfile("megatron-core").value(), &c.training);
  EXPECT_DOUBLE_EQ(c.Memory().tp_buffers, 10 * bsh);
}

TEST(FrameworkMechanisms, ReshardAfterForwardDecidesTheBackwardGathersAndTheResidentParameters) {
  Case c(64, 1, 1, 3, false);
  c.model = ZooModel("llama-2-7b").value();
  c.training.framework.reshard_after_forward = Reshard::kAlways;
  const StageMemoryDetail reshard = c.Memory();
  const double reshard_issued_dp = c.Time().dp_comm_s;
  c.training.framework.reshard_after_forward = Reshard::kNever;
  const StageMemoryDetail kept = c.Memory();
  EXPECT_DOUBLE_EQ(kept.zero3_gather, c.training.precision.param_bytes * kept.params.total());
  EXPECT_LT(reshard.zero3_gather, kept.zero3_gather / 10);
  EXPECT_LE(c.Time().dp_comm_s, reshard_issued_dp);
  // torchtitan's default: reshard without PP only.
  c.training.framework.reshard_after_forward = Reshard::kNotWithPp;
  EXPECT_DOUBLE_EQ(c.Memory().zero3_gather, reshard.zero3_gather);
}

TEST(FrameworkMechanisms, MasterIsParamStoresNoWorkingPrecisionCopy) {
  for (int zero : {0, 3}) {
    Case c(8, 1, 1, zero, false);
    c.model = ZooModel("llama-2-7b").value();
    EXPECT_GT(c.Memory().memory.weights, 0);
    c.training.framework.master_is_param = true;
    EXPECT_EQ(c.Memory().memory.weights, 0) << "ZeRO-" << zero;
  }
}

TEST(FrameworkMechanisms, KeptParamGradsAddTheirBytesAtZeroOneOnly) {
  Case c(8, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  const StageMemoryDetail freed = c.Memory();
  c.training.framework.param_grads_kept = true;
  const StageMemoryDetail kept = c.Memory();
  EXPECT_DOUBLE_EQ(kept.memory.gradients - freed.memory.gradients,
                   c.training.precision.param_bytes * kept.params.total());
  c.plan.zero = 2;  // BF16_Optimizer is the ZeRO-0/1 path; ZeRO-2 shards the gradient
  const double sharded = c.Memory().memory.gradients;
  c.training.framework.param_grads_kept = false;
  EXPECT_DOUBLE_EQ(c.Memory().memory.gradients, sharded);
  c.plan.zero = 1;
  c.plan.offload = Offload::kOptimizer;  // ZeRO-Offload runs DeepSpeed's ZeRO optimizer instead
  const double offloaded = c.Memory().memory.gradients;
  c.training.framework.param_grads_kept = true;
  EXPECT_DOUBLE_EQ(c.Memory().memory.gradients, offloaded);
}

// BF16_Optimizer's update_hp_grads: every micro-batch's backward of every
// chunk pays bytes x its parameters at HBM speed, at ZeRO-0/1 only.
TEST(FrameworkMechanisms, GradientAccumulationPassCostsEveryMicroBatch) {
  Case c(1, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  const TimeBreakdown fused = c.Time();
  c.training.framework.grad_accumulation_bytes = 18;
  const double params = ParamsOnStage(c.model, c.plan, 0).total();
  EXPECT_NEAR(c.Time().step_s - fused.step_s,
              static_cast<double>(c.plan.grad_accum) * MemoryBoundSeconds(c.cluster.gpu, 18 * params),
              1e-9 * fused.step_s);
  c.plan.zero = 2;
  c.plan.dp = 2, c.cluster.num_gpus = 2;
  c.training.global_batch = c.plan.global_batch();
  const double with_pass = c.Time().step_s;
  c.training.framework.grad_accumulation_bytes = 0;
  EXPECT_DOUBLE_EQ(c.Time().step_s, with_pass);  // ZeRO-2 reduce-scatters each micro-batch instead
}

TEST(FrameworkMechanisms, ContiguousGradientBufferNeedsNoBuckets) {
  Case c(8, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  EXPECT_GT(c.Memory().grad_buckets, 0);
  c.training.framework.contiguous_grad_buffer = true;
  EXPECT_EQ(c.Memory().grad_buckets, 0);
  c.plan.zero = 2;  // ZeRO-2 stages each micro-batch's gradient for its reduce-scatter
  EXPECT_GT(c.Memory().grad_buckets, 0);
}

TEST(FrameworkMechanisms, FusedCrossEntropyKeepsNoFp32Logits) {
  Case c(8, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  c.training.logits_chunk_tokens = 0;
  const StageMemoryDetail fp32 = c.Memory();
  const double head_fp32 = c.Time().step_s;
  c.training.framework.fused_cross_entropy = true;
  const StageMemoryDetail fused = c.Memory();
  const double logits = static_cast<double>(c.plan.micro_batch) * c.training.seq * c.model.vocab;
  EXPECT_DOUBLE_EQ(fp32.loss_activations - fused.loss_activations, 4 * logits);
  EXPECT_LT(c.Time().step_s, head_fp32);
}

// GPT-2 on one GPU: the bias-gradient passes and the GELU kernels leave the
// compute time when the GEMM epilogues do the work; Llama (no biases, SwiGLU)
// does not move.
TEST(FrameworkMechanisms, GemmEpiloguesRemoveTheBiasGradientAndGeluPasses) {
  Case c(1, 1, 1, 0, false);
  c.model = ZooModel("gpt-1.3b").value();
  c.plan.micro_batch = 4;
  c.plan.grad_accum = 1;
  c.training.global_batch = 4;
  c.training.seq = 2048;
  const double kernels = c.Time().compute_s;
  c.training.framework.bias_grad_in_gemm_epilogue = true;
  const double bias_fused = c.Time().compute_s;
  c.training.framework.gelu_in_gemm_epilogue = true;
  const double both = c.Time().compute_s;
  EXPECT_LT(bias_fused, kernels);
  // GELU forward (read + write) and backward (read 2, write 1) of T x F bf16
  // per layer: at most datasheet speed, at least half of it.
  const double t = 4.0 * 2048, gelu_bytes = 5 * t * c.model.ffn * 2 * c.model.layers;
  const double hbm = c.cluster.gpu.hbm_bytes_per_s;
  EXPECT_GT(bias_fused - both, gelu_bytes / hbm);
  EXPECT_LT(bias_fused - both, 2 * gelu_bytes / hbm);

  Case llama(1, 1, 1, 0, false);
  llama.model = ZooModel("llama-2-7b").value();
  const double swiglu = llama.Time().compute_s;
  llama.training.framework.gelu_in_gemm_epilogue = true;
  llama.training.framework.bias_grad_in_gemm_epilogue = true;
  EXPECT_DOUBLE_EQ(llama.Time().compute_s, swiglu);
}

// llama-2-7b on one GPU (DP 1, ZeRO-0: what fully_shard wraps with a world
// of one), `grad_accum` micro-batches per step.
Case OneRank(int64_t grad_accum) {
  Case c(1, 1, 1, 0, false);
  c.model = ZooModel("llama-2-7b").value();
  c.plan.grad_accum = grad_accum;
  c.training.global_batch = c.plan.global_batch();
  return c;
}

// Eager PyTorch's elementwise kernels (Framework::elementwise): with the fused
// kernels' own bytes the profile reproduces p3d's table exactly; with the
// eager counts of pytorch-fsdp2 every layer and the loss take longer.
TEST(FrameworkMechanisms, EagerElementwiseKernelsMoveTheirOwnBytes) {
  Case c = OneRank(1);
  const double fused = c.Time().step_s;
  const double a = c.training.precision.activation_bytes;
  c.training.framework.elementwise =
      ElementwiseBytes{{2 * a, 2 * a}, {3 * a, 5 * a}, {0, 0}, {a + 16, 4 + a}};
  EXPECT_DOUBLE_EQ(c.Time().step_s, fused);
  c.training.framework.elementwise = LoadFrameworkProfile("pytorch-fsdp2").value().framework.elementwise;
  const double eager = c.Time().step_s;
  EXPECT_GT(eager, 1.05 * fused);
  // The rotary entry alone moves it.
  ElementwiseBytes lighter = *c.training.framework.elementwise;
  lighter.rotary = {20, 20};  // torchtitan's complex-number rotary
  c.training.framework.elementwise = lighter;
  EXPECT_LT(c.Time().step_s, eager);
  EXPECT_GT(c.Time().step_s, fused);
}

// FSDP2's casts and copies (Framework::fsdp_copies) cost HBM time where
// fully_shard wraps the plan: ZeRO-3, and one data-parallel rank (ZeRO-0).
TEST(FrameworkMechanisms, FsdpCopiesCostEveryGatherAndReduce) {
  Case c = OneRank(2);
  c.training.framework.master_is_param = true;
  const double none = c.Time().step_s;
  const double gather_buffer = c.Memory().zero3_gather;
  c.training.framework.fsdp_copies = FsdpCopyBytes{10, 4, 6, 8, 12};
  const double params = ParamsOnStage(c.model, c.plan, 0).total();
  const double layers = params - ParamsOnStage(c.model, c.plan, 0).embedding - ParamsOnStage(c.model, c.plan, 0).head -
                        ParamsOnStage(c.model, c.plan, 0).final_norm;
  // Per micro-batch: forward 14 x P; backward 14 x the layers again + (6 + 8) x P; the
  // second micro-batch also adds 12 x P into the sharded gradient.
  const GpuSpec& gpu = c.cluster.gpu;
  const double expected = 2 * MemoryBoundSeconds(gpu, 14 * params) +
                          2 * MemoryBoundSeconds(gpu, 14 * layers + 14 * params + 12 * params / 2);
  const double copied = c.Time().step_s;
  EXPECT_NEAR(copied - none, expected, 1e-6 * none);
  EXPECT_GT(c.Memory().zero3_gather, gather_buffer);  // fully_shard gathers on one rank too
  // Parameters kept from forward to backward: no re-gather, fewer copies.
  c.training.framework.reshard_after_forward = Reshard::kNever;
  EXPECT_LT(c.Time().step_s, copied);
  // DP 2 at ZeRO-0 is DDP, not fully_shard: no copies.
  c.plan.dp = 2, c.cluster.num_gpus = 2;
  c.training.global_batch = c.plan.global_batch();
  const double ddp = c.Time().step_s;
  c.training.framework.fsdp_copies.reset();
  EXPECT_DOUBLE_EQ(c.Time().step_s, ddp);
}

TEST(FrameworkMechanisms, EagerLossAndSwigluKeepTheirTensors) {
  Case c = OneRank(8);
  c.training.logits_chunk_tokens = 0;
  const StageMemoryDetail one = c.Memory();
  c.training.framework.loss_fp32_tensors = 3;
  c.training.framework.swiglu_saves_silu = true;
  const StageMemoryDetail eager = c.Memory();
  const double tokens = static_cast<double>(c.plan.micro_batch) * c.training.seq;
  EXPECT_DOUBLE_EQ(eager.loss_activations - one.loss_activations, 8 * tokens * c.model.vocab);
  const double silu = c.training.precision.activation_bytes * tokens * c.model.ffn;
  EXPECT_NEAR(eager.layer_activations - one.layer_activations, silu * c.model.layers * eager.in_flight,
              1e-9 * one.layer_activations);
}

// zero_grad(set_to_none=True): at one micro-batch per step the gradients and
// the activations peak apart, so the stage holds the larger, not the sum.
TEST(FrameworkMechanisms, GradientsSetToNoneMeetTheActivationsOnlyWithAccumulation) {
  Case c = OneRank(1);
  const StageMemoryDetail kept = c.Memory();
  c.training.framework.grads_set_to_none = true;
  const StageMemoryDetail freed = c.Memory();
  const MemoryBreakdown& k = kept.memory;
  EXPECT_DOUBLE_EQ(freed.memory.gradients, std::max(0.0, k.gradients - (k.activations + k.buffers)));
  EXPECT_LT(freed.memory.total(), k.total());
  c = OneRank(2);  // the first micro-batch's gradients exist during the second's forward
  c.training.framework.grads_set_to_none = true;
  const double with_accumulation = c.Memory().memory.gradients;
  c.training.framework.grads_set_to_none = false;
  EXPECT_DOUBLE_EQ(c.Memory().memory.gradients, with_accumulation);
}

TEST(FrameworkMechanisms, SelectiveRecomputePoliciesStoreAndRerunWhatTheyName) {
  Case c(8, 1, 1, 1, false);
  c.model = ZooModel("llama-2-7b").value();
  c.plan.recompute = Recompute::kNone;
  const double none_stored = ActivationBytesPerLayer(c.model, LayerKind{}, c.training, c.plan);
  const double none_step = c.Time().step_s;
  c.plan.recompute = Recompute::kSelective;
  // p3d's "scores" with the fused core: nothing to drop, nothing re-run.
  c.training.framework.selective = SelectiveRecompute::kScores;
  EXPECT_DOUBLE_EQ(ActivationBytesPerLayer(c.model, LayerKind{}, c.training, c.plan), none_stored);
  EXPECT_DOUBLE_EQ(c.Time().step_s, none_step);
  // Megatron's core_attn: the fused forward re-runs, memory unchanged.
  c.training.framework.selective = SelectiveRecompute::kCoreAttention;
  EXPECT_DOUBLE_EQ(ActivationBytesPerLayer(c.model, LayerKind{}, c.training, c.plan), none_stored);
  EXPECT_GT(c.Time().step_s, none_step);
  // torchtitan's op-level policy: about half the activations, some re-run,
  // less than full recompute re-runs.
  c.training.framework.selective = SelectiveRecompute::kOpLevel;
  const double op_stored = ActivationBytesPerLayer(c.model, LayerKind{}, c.training, c.plan);
  const double op_step = c.Time().step_s;
  EXPECT_LT(op_stored, 0.7 * none_stored);
  EXPECT_GT(op_stored, 0.3 * none_stored);
  EXPECT_GT(op_step, none_step);
  c.plan.recompute = Recompute::kFull;
  EXPECT_GT(c.Time().step_s, op_step);
}

}  // namespace
}  // namespace p3d

namespace p3d {
namespace {

// The attention kernel: FlashAttention-2's and -3's speed relative to cuDNN on
// Hopper, from the FlashAttention-3 paper's H100 figures (attention_kernels.cc),
// interpolated in log(seq) and clamped; other cards and cuDNN itself: 1.
TEST(FrameworkMechanisms, AttentionKernelRunsAtItsPublishedSpeedRelativeToCudnn) {
  const GpuSpec h100 = CatalogCluster("h100-sxm").value().gpu;
  const GpuSpec a100 = CatalogCluster("a100-80gb").value().gpu;
  const AttentionKernel fa2 = AttentionKernel::kFlashAttention2;
  EXPECT_DOUBLE_EQ(AttentionKernelSpeed(h100, fa2, 2048, AttentionPass::kForward), 298.0 / 484);
  EXPECT_DOUBLE_EQ(AttentionKernelSpeed(h100, fa2, 2048, AttentionPass::kBackward), 291.0 / 465);
  // Half way between 2k and 4k in log(seq), then beyond the last point.
  EXPECT_NEAR(AttentionKernelSpeed(h100, fa2, 2048 * std::sqrt(2.0), AttentionPass::kForward),
              (298 + 0.5 * (319 - 298)) / (484 + 0.5 * (518 - 484)), 1e-12);
  EXPECT_DOUBLE_EQ(AttentionKernelSpeed(h100, fa2, 131072, AttentionPass::kBackward), 322.0 / 516);
  EXPECT_DOUBLE_EQ(AttentionKernelSpeed(h100, AttentionKernel::kFlashAttention3, 512,
                                        AttentionPass::kForward),
                   292.0 / 315);
  EXPECT_EQ(AttentionKernelSpeed(h100, AttentionKernel::kCudnn, 4096, AttentionPass::kForward), 1);
  EXPECT_EQ(AttentionKernelSpeed(a100, fa2, 4096, AttentionPass::kForward), 1);

  // In the layer: only the fused core's time moves, by 1/speed.
  const ModelSpec m = ZooModel("llama-2-7b").value();
  TrainingSpec t;
  t.seq = 8192;
  const ComputeShape shape{1, 1, Recompute::kNone, false, AttentionImpl::kFused};
  const LayerKernelTimes cudnn = LayerKernels(m, LayerKind{}, t, h100, shape);
  t.framework.attention_kernel = fa2;
  const LayerKernelTimes flash = LayerKernels(m, LayerKind{}, t, h100, shape);
  EXPECT_EQ(flash.forward.memory_s, cudnn.forward.memory_s);
  EXPECT_EQ(flash.backward.memory_s, cudnn.backward.memory_s);
  // cuDNN's core: 2*B*NH*S^2*HD forward FLOPs at 46% of peak, backward 2.5x
  // at 34% (compute_model.cc); FlashAttention-2 takes 1/speed of that.
  const double core = 2.0 * 32 * 8192.0 * 8192 * 128 / h100.peak_flops;
  const double fs = AttentionKernelSpeed(h100, fa2, 8192, AttentionPass::kForward);
  const double bs = AttentionKernelSpeed(h100, fa2, 8192, AttentionPass::kBackward);
  EXPECT_NEAR(flash.forward.gemm_s - cudnn.forward.gemm_s, core / 0.46 * (1 / fs - 1), 1e-12);
  EXPECT_NEAR(flash.backward.gemm_s - cudnn.backward.gemm_s, 2.5 * core / 0.34 * (1 / bs - 1), 1e-12);
}

}  // namespace
}  // namespace p3d
