// The implementation a plan is predicted for: p3d's executor or a training
// framework (Megatron-Core, NeMo, torchtitan, DeepSpeed, ...), as
//   - the mechanisms that change memory or time (Framework's fields), which
//     the simulator reads from TrainingSpec::framework, and
//   - the named support rules that say which plans it runs (SupportRule),
//     which the search, p3d-plan's `runs` column, the exporters and p3d-run
//     consult: the one rule table of every front end.
// The values are data, one file per framework with a source for every field
// (simulator/frameworks/<name>.json, loaded by simulator/framework_profile.h;
// docs/frameworks.md). Framework{}'s defaults are p3d's executor (p3d.json):
// tests/simulator/framework_profile_test.cc keeps the two equal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/fp8.h"
#include "common/status.h"

namespace p3d {

struct Plan;

// Plans a framework cannot run, each a predicate over a Plan with a stable id
// (the id is what messages, the `runs` column and the profiles' JSON say).
enum class SupportRule : uint8_t {
  kOffloadParams,          // "offload-params": parameters offloaded to the host (ZeRO-Infinity)
  kOffloadOptimizer,       // "offload-optimizer": optimizer offloaded while parameters stay on the GPU
  kOffloadNeedsZero1,      // "offload=>zero1": any offload with a ZeRO stage other than 1
  kZeroWithTpPp,           // "zero-with-tp/pp": ZeRO-2/3 with TP or PP > 1
  kZeroWithPp,             // "pp=>zero<=1": ZeRO-2/3 with PP > 1
  kZeroAbove1,             // "zero<=1": ZeRO-2/3 at all
  kZero1,                  // "zero!=1": ZeRO-1 (optimizer-only sharding)
  kZero2,                  // "zero!=2": ZeRO-2 (gradients sharded, parameters replicated)
  kInterleaved,            // "vpp=1": interleaved pipeline (VPP > 1)
  kTpWithoutSp,            // "tp=>sp": TP > 1 without sequence parallelism
  kReplicatedMultiDim,     // "zero0=>1d": plain data parallelism (ZeRO-0) over DP x CP > 1 with TP, CP or PP > 1
  kSequenceParallel,       // "no-sp": sequence parallelism
  kSelective,              // "no-selective": selective recompute
  kTensorParallel,         // "no-tp": tensor parallelism (TP > 1)
  kPipeline,               // "no-pp": pipeline parallelism (PP > 1)
  kUnevenStages,           // "uneven-stages": a set first or last pipeline stage layer count
  kExpertParallel,         // "no-ep": expert parallelism (EP > 1)
  kContextParallel,        // "no-cp": context parallelism (CP > 1, the p2p ring scheme)
  kHybridShard,            // "no-hsdp": hybrid sharding (a ZeRO shard group smaller than DP x CP)
  kHybridShardZero1,       // "hsdp=>zero1": hybrid sharding with a ZeRO stage other than 1
  kHybridShardZero3,       // "hsdp=>zero3": hybrid sharding with a ZeRO stage other than 3
  kAccountSplit,           // "account-split": the embedding or loss counted as a pipeline layer
                           // (Megatron-Core's --account-for-embedding/loss-in-pipeline-split)
  kPpBeforeDp,             // "no-tp-pp-dp": the tp-pp-dp placement (Plan::placement)
};
inline constexpr int kSupportRuleCount = 23;
const char* SupportRuleId(SupportRule rule);
// Inverse of SupportRuleId; false when `id` names no rule.
bool ParseSupportRule(std::string_view id, SupportRule* out);
// True when `plan` breaks `rule`.
bool Breaks(SupportRule rule, const Plan& plan);
// What a plan breaking `rule` does, e.g. "ZeRO-2 with PP=4" (for messages).
std::string DescribeBreach(SupportRule rule, const Plan& plan);

// A framework's rules come in two kinds:
//   limit  the framework cannot express the plan at all (DeepSpeed's pipeline
//          engine has no interleaved schedule): the search never enumerates
//          it and a fixed flag asking for it is refused naming the rule.
//   gap    the implementation does not run it yet (p3d-run's missing ZeRO-2/3
//          with TP): the search lists it, the `runs` column names the rule
//          and --runnable drops it.
enum class RuleKind : uint8_t { kLimit, kGap };
using SupportRules = uint32_t;  // bit i = SupportRule(i)
inline constexpr SupportRules RuleBit(SupportRule r) { return SupportRules{1} << static_cast<int>(r); }

// How tensor-parallel collectives overlap GEMMs.
//   none         every TP collective is exposed (p3d's executor).
//   async-grad   Megatron's LinearWithGradAccumulationAndAsyncCommunication:
//                in backward a column-parallel layer's input-gradient
//                all-reduce (SP: reduce-scatter) runs under its weight-gradient
//                GEMM, and with SP the re-gather of its saved input under its
//                input-gradient GEMM (CUDA_DEVICE_MAX_CONNECTIONS=1).
//   userbuffers  Transformer Engine's comm+GEMM overlap (--tp-comm-overlap,
//                needs SP; without SP a plan falls back to async-grad): also
//                the forward all-gathers under the q/k/v and fc1 GEMMs
//                (ring exchange, TP chunks), the forward reduce-scatters under
//                the out-proj and fc2 GEMMs (pipelined, 4 chunks) and the
//                backward all-gather of dY under their input-gradient GEMMs.
enum class TpOverlap : uint8_t { kNone, kAsyncGrad, kUserBuffers };
const char* TpOverlapName(TpOverlap o);  // "none" | "async-grad" | "userbuffers"
bool ParseTpOverlap(std::string_view name, TpOverlap* out);

// The fused attention kernel the framework runs (its speed relative to
// cuDNN's, per GPU: simulator/attention_kernels.h).
//   cudnn         cuDNN's fused flash attention (p3d's executor; Transformer
//                 Engine's FusedAttention)
//   flash-attn-2  FlashAttention-2 (the flash-attn package, PyTorch SDPA's
//                 flash backend, Triton kernels of the same algorithm)
//   flash-attn-3  FlashAttention-3 (Hopper)
enum class AttentionKernel : uint8_t { kCudnn, kFlashAttention2, kFlashAttention3 };
const char* AttentionKernelName(AttentionKernel k);  // "cudnn" | "flash-attn-2" | "flash-attn-3"
bool ParseAttentionKernel(std::string_view name, AttentionKernel* out);

// What selective recompute re-runs.
//   scores          the S x S probabilities of an unfused core (p3d's
//                   executor); with the fused core there is nothing S x S to
//                   drop, so it is the same plan as no recompute.
//   core-attention  the whole attention core (Megatron's --recompute-modules
//                   core_attn, its default): the unfused core as above; the
//                   fused core's forward re-runs in backward (its output is
//                   the out-proj input, stored anyway, so memory is unchanged).
//   op-level        torchtitan's per-op selective checkpointing
//                   (selective_ac_option "op"): the outputs of every second
//                   matmul and of attention are saved; norms, pointwise ops and
//                   the other matmuls are recomputed.
enum class SelectiveRecompute : uint8_t { kScores, kCoreAttention, kOpLevel };
const char* SelectiveRecomputeName(SelectiveRecompute s);  // "scores" | "core-attention" | "op-level"
bool ParseSelectiveRecompute(std::string_view name, SelectiveRecompute* out);

// With a pipeline (PP > 1), which stages reduce gradients in overlapped
// buckets (Framework::grad_reduce_overlap):
//   all          every stage (p3d's executor)
//   first-stage  stage 0 only; later stages, which finish their backward
//                earlier, reduce in one piece after it (Megatron's DDP drops
//                bucketing on pipeline ranks > 0)
//   none         no stage: the pipeline engine reduces after its flush
//                (DeepSpeed's PipelineEngine)
enum class PpGradOverlap : uint8_t { kAll, kFirstStage, kNone };
const char* PpGradOverlapName(PpGradOverlap o);  // "all" | "first-stage" | "none"
bool ParsePpGradOverlap(std::string_view name, PpGradOverlap* out);

// When ZeRO-3 (FSDP) frees a module's gathered parameters after its forward.
//   always       freed, gathered again for the backward (FSDP's default)
//   never        kept unsharded from forward to backward: no backward gather,
//                the stage's parameters resident during the step
//   not-with-pp  always without a pipeline, never with one (torchtitan's
//                fsdp_reshard_after_forward = "default")
enum class Reshard : uint8_t { kAlways, kNever, kNotWithPp };
const char* ReshardName(Reshard r);  // "always" | "never" | "not-with-pp"
bool ParseReshard(std::string_view name, Reshard* out);

// p3d's executor's data-parallel gradient bucket, parameters: the p3d
// profile's grad_bucket_elements (simulator/frameworks/p3d.json, checked equal
// by framework_profile_test) and p3d-run's default --bucket-mb (x 4 bytes).
inline constexpr double kExecutorGradBucketElements = 25e6;

// Bytes one elementwise op moves through HBM per element of its tensor, in
// the forward and in the backward pass.
struct OpBytes {
  double forward = 0, backward = 0;
  bool operator==(const OpBytes&) const = default;
};

// The elementwise ops an implementation runs as separate eager PyTorch
// kernels (no torch.compile, no fused kernel), each replacing the fused
// kernel's bytes of p3d's table (docs/time-model.md section 2), per element:
//   rotary     of q and k, T*(q + kv) (the model code's own expression:
//              slices, fp32 upcasts, products, stack, downcast, and the
//              autograd graph of each in backward)
//   swiglu     of the product silu(gate) * up, T*F (two kernels forward;
//              backward two products, silu's backward and the cat of the
//              gate and up gradients)
//   qkv_split  of q, k and v, T*(q + 2kv): the split of the fused q/k/v
//              output, whose backward concatenates the three gradients
//   loss       of the logits, T*V/TP, without a fused cross-entropy: the
//              fp32 upcast, log_softmax and nll_loss, and their backward
//              (zero-filled fp32 gradient, log_softmax backward, downcast)
struct ElementwiseBytes {
  OpBytes rotary, swiglu, qkv_split, loss;
  bool operator==(const ElementwiseBytes&) const = default;
};

// Bytes per parameter FSDP2 (fully_shard) moves in its own copies around the
// collectives, beside the gathers and reduce-scatters the comm model prices
// (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py):
//   gather_shard  per parameter of the rank's shard, every gather of its
//                 module: the fp32 -> bf16 cast (_get_param_all_gather_inputs'
//                 foreach copy) and the copy into the all-gather buffer
//                 (all_gather_copy_in)
//   gather_out    per unsharded parameter, every gather: the copy out of the
//                 all-gather output into the parameters (split_with_sizes_copy)
//   reduce        per unsharded parameter, every micro-batch: the bf16 ->
//                 fp32 copy of the gradient into the reduce-scatter input
//                 (foreach_reduce's chunk_cat)
//   local_reduce  per parameter, on a shard group of one rank: the copy of
//                 that input to the output, which replaces the reduce-scatter
//   accumulate    per parameter of the shard, every micro-batch after a
//                 step's first: sharded gradient += the new one
struct FsdpCopyBytes {
  double gather_shard = 0, gather_out = 0, reduce = 0, local_reduce = 0, accumulate = 0;
  bool operator==(const FsdpCopyBytes&) const = default;
};

// The mechanisms of one implementation. Defaults: p3d's executor.
struct Framework {
  std::string name = "p3d";
  SupportRules limits = RuleBit(SupportRule::kPpBeforeDp);
  SupportRules gaps = RuleBit(SupportRule::kOffloadParams) | RuleBit(SupportRule::kZeroWithTpPp) |
                      RuleBit(SupportRule::kUnevenStages) | RuleBit(SupportRule::kExpertParallel) |
                      RuleBit(SupportRule::kContextParallel) | RuleBit(SupportRule::kHybridShard) |
                      RuleBit(SupportRule::kAccountSplit);

  TpOverlap tp_overlap = TpOverlap::kNone;
  AttentionKernel attention_kernel = AttentionKernel::kCudnn;
  // Data-parallel gradient reduction (ZeRO-0/1: once per step after the last
  // micro-batch; ZeRO-2: every micro-batch) in buckets of
  // max(grad_bucket_elements, grad_bucket_elements_per_dp * DP) parameters.
  // overlapped: a bucket is reduced as soon as the backward has produced it;
  // else the whole reduction starts after the backward (exposed).
  bool grad_reduce_overlap = true;
  PpGradOverlap grad_reduce_overlap_with_pp = PpGradOverlap::kAll;
  // Whether pipeline rank `stage` of `pp` reduces in overlapped buckets.
  bool OverlapsGradReduce(int pp, int stage) const {
    if (!grad_reduce_overlap) return false;
    if (pp == 1 || grad_reduce_overlap_with_pp == PpGradOverlap::kAll) return true;
    return grad_reduce_overlap_with_pp == PpGradOverlap::kFirstStage && stage == 0;
  }
  double grad_bucket_elements = kExecutorGradBucketElements;
  double grad_bucket_elements_per_dp = 0;
  // Gradients accumulate in one contiguous buffer reduced in place (Megatron's
  // DDP): no separate bucket memory. Else two buckets of gradients are staged.
  bool contiguous_grad_buffer = false;
  // Bytes per element of the ZeRO-2/3 per-micro-batch gradient reduce-scatter;
  // 0: param_bytes (the gradient leaves the backward GEMMs in bf16).
  // FSDP2's MixedPrecisionPolicy(reduce_dtype=float32) reduces in fp32 (4).
  int sharded_grad_reduce_bytes = 0;
  // ZeRO-1/2: the gradient is reduce-scattered (each rank gets its shard)
  // instead of all-reduced.
  bool zero_reduce_scatter = false;
  // ZeRO-1/2: the updated parameters' all-gather runs under the next step's
  // first forward, bucket by bucket, instead of after the optimizer.
  bool param_gather_overlap = false;
  Reshard reshard_after_forward = Reshard::kAlways;  // ZeRO-3 only
  // True when a ZeRO-3 plan with `pp` pipeline stages re-gathers parameters for the backward.
  bool Reshards(int pp) const {
    return reshard_after_forward == Reshard::kAlways || (reshard_after_forward == Reshard::kNotWithPp && pp == 1);
  }
  // The optimizer steps on the high-precision parameter itself (FSDP2's
  // MixedPrecisionPolicy, DDP under autocast): no stored param_bytes copy;
  // working-precision weights exist only transiently (gather buffers, casts).
  bool master_is_param = false;
  // ZeRO-0/1 without offload: the working-precision gradients (.grad, at
  // param_bytes) of every parameter stay allocated beside the fp32
  // accumulation buffer from one backward to the next (DeepSpeed's
  // BF16_Optimizer: the pipeline engine calls update_hp_grads(clear_lp_grads=
  // False) after each backward). Else the backward accumulates straight into
  // the buffer (Megatron's main_grad) or frees them.
  bool param_grads_kept = false;
  // ZeRO-0/1: bytes per parameter moved, every micro-batch, by a separate pass
  // that adds the micro-batch's gradient into the accumulation buffer after
  // its backward (DeepSpeed's BF16_Optimizer.update_hp_grads: read the bf16
  // .grad 2, write and read its fp32 copy 4 + 4, read and write the buffer
  // 4 + 4 = 18). 0: the weight-gradient GEMM accumulates in place (Megatron's
  // gradient-accumulation fusion, p3d's beta = 1 GEMMs).
  int grad_accumulation_bytes = 0;
  // Parameters per gradient bucket at data-parallel degree `dp`.
  double GradBucketElements(int dp) const {
    const double scaled = grad_bucket_elements_per_dp * dp;
    return scaled > grad_bucket_elements ? scaled : grad_bucket_elements;
  }
  SelectiveRecompute selective = SelectiveRecompute::kScores;
  // The cross-entropy reads the bf16 logits in one fused kernel and keeps no
  // fp32 copy (flash-attn's xentropy, Transformer Engine's fused loss); else
  // the logits are cast to fp32 and the fp32 softmax kept for the backward.
  bool fused_cross_entropy = false;
  // GPT-2's MLP: bias + GELU forward and the GELU gradient run in the fc GEMMs'
  // epilogues (cuBLASLt GELU_AUX_BIAS / DGELU): no activation kernels.
  bool gelu_in_gemm_epilogue = false;
  // Bias gradients come out of the weight-gradient GEMMs (cuBLASLt BGRADB): no
  // separate pass over the linear layers' output gradients.
  bool bias_grad_in_gemm_epilogue = false;
  // Activation-sized [B*S, H] buffers the userbuffers TP overlap registers,
  // one per overlapped GEMM (Transformer Engine's initialize_ub: 10), held
  // instead of the SP all-gather buffer while it is in use.
  int tp_overlap_buffers = 0;
  // FP8 recipes (common/fp8.h) the implementation runs; a recipe in fp8_gaps
  // is predicted but not run yet (p3d's executor has no FP8 GEMMs); any other
  // is a limit: rule "fp8-recipe" (Fp8RuleBroken).
  Fp8Recipes fp8_recipes = 0;
  Fp8Recipes fp8_gaps = Fp8Bit(Fp8Recipe::kDelayed) | Fp8Bit(Fp8Recipe::kTensorwise) |
                        Fp8Bit(Fp8Recipe::kBlockwise) | Fp8Bit(Fp8Recipe::kMxfp8);
  // Recipes under which the linear weights are FP8 primary weights (Megatron's
  // --fp8-param-gather, TE's fp8_model_init): no bf16 copy of them is kept,
  // and ZeRO-1/2 all-gathers them in FP8 (1 + scale bytes per weight).
  Fp8Recipes fp8_param_gather = 0;
  bool Fp8PrimaryWeights(Fp8Recipe r) const { return r != Fp8Recipe::kOff && (fp8_param_gather & Fp8Bit(r)); }
  // Eager PyTorch (ElementwiseBytes); unset: p3d's fused kernels.
  std::optional<ElementwiseBytes> elementwise;
  // fp32 [T_c, V/TP] tensors alive at the unfused cross-entropy's peak: p3d's
  // executor keeps its fp32 softmax (1); eager PyTorch's log_softmax output,
  // nll_loss's zero-filled gradient and log_softmax's input gradient (3).
  int loss_fp32_tensors = 1;
  // SwiGLU as silu(gate) * up in eager PyTorch: autograd's mul saves both
  // operands, so silu's output (T*F) is stored beside gate, up and the
  // product (4 MLP intermediates of width F instead of 3).
  bool swiglu_saves_silu = false;
  // FSDP2's copies (FsdpCopyBytes); unset: none. Where they run: FsdpWraps.
  std::optional<FsdpCopyBytes> fsdp_copies;
  // optimizer.zero_grad(set_to_none=True) (PyTorch's default since 2.0):
  // the gradients are freed after each step and made again by the backward,
  // so with one micro-batch per step they do not exist while the forward's
  // activations peak (memory: max of the two, docs/memory-model.md).
  bool grads_set_to_none = false;
  // True when the implementation runs `plan` under fully_shard, so that
  // FsdpCopyBytes apply: ZeRO-3, and a plan of one data-parallel rank
  // (DP x CP = 1, planned as ZeRO-0 since nothing is sharded), which
  // fully_shard wraps the same way with a world of one.
  bool FsdpWraps(const Plan& plan) const;
};

// nullptr when `framework` runs `plan` as far as rules of `kind` go; else the
// id of the first such rule it breaks, with "<name>: rule <id>: <breach>" in
// *detail when detail is non-null. Allocation-free when detail is null.
const char* FrameworkRuleBroken(const Framework& framework, RuleKind kind, const Plan& plan,
                                std::string* detail = nullptr);

// The FP8 counterpart of FrameworkRuleBroken: nullptr when `framework` runs
// FP8 recipe `recipe` as far as rules of `kind` go (kOff always runs); else
// "fp8-recipe", with "<name>: rule fp8-recipe: ..." in *detail when non-null.
const char* Fp8RuleBroken(const Framework& framework, RuleKind kind, Fp8Recipe recipe,
                          std::string* detail = nullptr);

}  // namespace p3d
