// Megatron-LM arguments (pretrain_gpt.py) for one plan.
//
// Flag names and start-up checks follow megatron/training/arguments.py of
// Megatron-LM with Megatron Core 0.14 (add_megatron_arguments and
// validate_args); Megatron-FSDP flags follow
// docs/discussions/megatron-fsdp-user-guide/megatron-fsdp-user-guide.md.
// Megatron derives DP = world / (TP * PP * CP) and the number of
// micro-batches as global_batch / (micro_batch * DP), so --global-batch-size
// and --micro-batch-size carry the plan's grad_accum exactly. Context
// parallel is --context-parallel-size with --cp-comm-type p2p (the K/V ring
// p3d times; Transformer Engine's AttnFuncWithCPAndKVP2P); hybrid sharding is
// --num-distributed-optimizer-instances = DP x CP / shard group (the
// distributed optimizer, ZeRO-1, within each instance: the megatron-core
// profile's hsdp=>zero1 rule).
#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "planner/export.h"
#include "planner/export_precision.h"

namespace p3d {
namespace {

using Args = std::vector<std::pair<std::string, std::string>>;  // flag, value ("" = switch)

Status CheckMegatronLimits(const PlanRequest& request, const Plan& plan) {
  const ModelSpec& m = request.model;
  if (plan.uneven_stages() || plan.accounts_edges()) {
    // TransformerConfig.__post_init__ checks an uneven split (counts > 0, the
    // rest divisible by the middle stages, each a multiple of VPP) and an
    // accounted one (layers + embedding + loss divisible by PP, each rank's
    // share by VPP): the same rules as PipelineSplitRule.
    std::string detail;
    if (const char* rule = PipelineSplitRule(plan, m.layers, &detail))
      return Status::Infeasible(fmt::format(
          "megatron: pipeline split (first/last stage layers {}/{}, embedding/loss accounted "
          "{}/{}): {} (rule {}; Megatron-Core's TransformerConfig refuses this split)",
          plan.first_stage_layers, plan.last_stage_layers, plan.account_for_embedding,
          plan.account_for_loss, detail, rule));
  } else if (m.layers % plan.pp != 0) {
    // validate_args: 'Number of layers should be divisible by the pipeline-model-parallel size'
    return Status::Infeasible(fmt::format(
        "megatron: {} layers are not divisible by PP={} (validate_args asserts num_layers % "
        "pipeline_model_parallel_size == 0 unless --decoder-first/last-pipeline-num-layers are given)",
        m.layers, plan.pp));
  } else if (plan.vpp > 1 && m.layers % (plan.pp * plan.vpp) != 0) {
    // validate_args: layers per pipeline stage % layers per virtual stage == 0.
    return Status::Infeasible(fmt::format(
        "megatron: {} layers do not split into PP*VPP={}x{} virtual stages "
        "(--num-layers-per-virtual-pipeline-stage must divide layers per pipeline stage)",
        m.layers, plan.pp, plan.vpp));
  }
  // validate_args: the interleaved schedule needs PP > 1 (PP > 2 when
  // --no-overlap-p2p-communication is given; overlap is the default).
  if (plan.vpp > 1 && plan.pp < 2) {
    return Status::Infeasible(
        fmt::format("megatron: VPP={} needs PP>1 (the interleaved schedule asserts "
                    "pipeline-model-parallel size > 1)",
                    plan.vpp));
  }
  // Attention projections split by heads and by query groups (KV heads).
  if (m.heads % plan.tp != 0) {
    return Status::Infeasible(
        fmt::format("megatron: {} attention heads are not divisible by TP={}", m.heads, plan.tp));
  }
  if (m.kv_heads % plan.tp != 0) {
    return Status::Infeasible(fmt::format(
        "megatron: --num-query-groups {} is not divisible by TP={} (each TP rank holds whole "
        "query groups)",
        m.kv_heads, plan.tp));
  }
  if (m.ffn % plan.tp != 0) {
    return Status::Infeasible(
        fmt::format("megatron: --ffn-hidden-size {} is not divisible by TP={}", m.ffn, plan.tp));
  }
  // Experts are tensor-parallel over --expert-tensor-parallel-size.
  if (m.moe() && m.expert_ffn() % plan.expert_tp() != 0) {
    return Status::Infeasible(fmt::format("megatron: --moe-ffn-hidden-size {} is not divisible by the expert TP={}",
                                          m.expert_ffn(), plan.expert_tp()));
  }
  // gpt-oss's attention (sinks, alternating windows, o biases) and expert
  // biases have no flags in the Megatron-Core version p3d exports for.
  if (m.attention_sinks || m.sliding_window > 0 || m.attention_bias || m.expert_bias) {
    return Status::Infeasible(fmt::format(
        "megatron: {}'s attention sinks, sliding windows or attention/expert biases are not exported "
        "(Megatron Core 0.14 flags cover MLA, GQA, q/k norms and MoE)",
        m.name));
  }
  // ZeRO-2/3 with PP and the offload limits are the profile's rules
  // (simulator/frameworks/megatron-core.json, megatron-lm.json).
  P3D_RETURN_IF_ERROR(CheckFrameworkRuns(request, plan));
  // Learned absolute positions are a table of max_position_embeddings rows,
  // and validate_args asserts max_position_embeddings >= seq_length.
  if (m.learned_positions() && request.training.seq > m.max_positions) {
    return Status::Infeasible(
        fmt::format("megatron: seq {} > {} learned positions (validate_args asserts "
                    "max_position_embeddings >= seq_length)",
                    request.training.seq, m.max_positions));
  }
  // BLOOM's ALiBi and embedding LayerNorm came from the BigScience
  // Megatron-DeepSpeed fork (--position-embedding-type alibi, --embed-layernorm);
  // Megatron-LM has neither.
  if (m.alibi || m.embedding_norm) {
    return Status::Infeasible(fmt::format(
        "megatron: the model uses {}{}{}: Megatron-LM's --position-embedding-type is learned_absolute, rope, "
        "mrope, relative or none, and it has no embedding LayerNorm (BLOOM trained on the BigScience "
        "Megatron-DeepSpeed fork: --position-embedding-type alibi --embed-layernorm)",
        m.alibi ? "ALiBi" : "", m.alibi && m.embedding_norm ? " and " : "",
        m.embedding_norm ? "an embedding LayerNorm" : ""));
  }
  const Precision& p = request.training.precision;
  return CheckExportPrecision(
      p, {.framework = "megatron",
          .param = " has no Megatron mode (--bf16 = 2, fp32 = 4)",
          .grad = ": Megatron accumulates gradients in fp32 (4) or, with --grad-reduce-in-bf16, "
                  "bf16 (2)",
          .master = ": p3d exports Megatron's default fp32 main weights and fp32 Adam moments "
                    "(4 + 8 bytes) only"});
}

void AddParallelism(const Plan& plan, const ModelSpec& m, Args& args,
                    std::vector<std::string>& notes) {
  args.push_back({"--tensor-model-parallel-size", std::to_string(plan.tp)});
  args.push_back({"--pipeline-model-parallel-size", std::to_string(plan.pp)});
  if (plan.cp > 1) {
    args.push_back({"--context-parallel-size", std::to_string(plan.cp)});
    args.push_back({"--cp-comm-type", "p2p"});
  }
  // Uneven stages: the first/last stage's layers; the middle stages share the
  // rest (Megatron-Core's get_num_layers_to_build).
  if (plan.first_stage_layers != 0)
    args.push_back({"--decoder-first-pipeline-num-layers", std::to_string(plan.first_stage_layers)});
  if (plan.last_stage_layers != 0)
    args.push_back({"--decoder-last-pipeline-num-layers", std::to_string(plan.last_stage_layers)});
  // The embedding/loss counted as layers of the split (Megatron-Core's
  // TransformerConfig account_for_embedding/loss_in_pipeline_split).
  if (plan.account_for_embedding) args.push_back({"--account-for-embedding-in-pipeline-split", ""});
  if (plan.account_for_loss) args.push_back({"--account-for-loss-in-pipeline-split", ""});
  if (plan.vpp > 1 && (plan.uneven_stages() || plan.accounts_edges())) {
    // validate_args: "please use --num-virtual-stages-per-pipeline-rank to
    // specify virtual pipeline parallel degree when enable uneven pipeline
    // parallelism" (Megatron Core >= 0.11); an accounted split's chunks are
    // not L / (PP x VPP) layers either.
    args.push_back({"--num-virtual-stages-per-pipeline-rank", std::to_string(plan.vpp)});
  } else if (plan.vpp > 1) {
    // Accepted by every Megatron-LM release with interleaving; Megatron Core
    // >= 0.11 also takes --num-virtual-stages-per-pipeline-rank VPP (only one
    // of the two may be given).
    args.push_back({"--num-layers-per-virtual-pipeline-stage",
                    std::to_string(m.layers / (plan.pp * plan.vpp))});
  }
  if (plan.sequence_parallel && plan.tp > 1) args.push_back({"--sequence-parallel", ""});
  // The tp-pp-dp placement: megatron/training/initialize.py passes
  // order='tp-pp-dp' to initialize_model_parallel with this flag.
  if (plan.placement == Placement::kPpBeforeDp) args.push_back({"--use-tp-pp-dp-mapping", ""});
  if (m.moe()) {
    // EP (x expert TP) carved from DP x TP; the experts' TP defaults to TP
    // (MCore's default for --expert-tensor-parallel-size), stated so the layout is explicit.
    args.push_back({"--expert-model-parallel-size", std::to_string(plan.ep)});
    args.push_back({"--expert-tensor-parallel-size", std::to_string(plan.expert_tp())});
  }
  if (plan.tp > 1) {
    notes.push_back(
        "TP>1: Megatron asserts CUDA_DEVICE_MAX_CONNECTIONS=1 on Hopper and older GPUs; export it "
        "before launching");
  }
  switch (plan.recompute) {
    case Recompute::kNone:
      break;
    case Recompute::kSelective:
      args.push_back({"--recompute-granularity", "selective"});
      break;
    case Recompute::kFull:
      args.push_back({"--recompute-granularity", "full"});
      args.push_back({"--recompute-method", "uniform"});
      args.push_back({"--recompute-num-layers", "1"});
      break;
  }
  if (plan.zero == 1) args.push_back({"--use-distributed-optimizer", ""});
  if (plan.zero_shard > 0)
    args.push_back({"--num-distributed-optimizer-instances", std::to_string(plan.zero_replicas())});
  if (plan.offload == Offload::kOptimizer) {
    // megatron/core/optimizer/cpu_offloading/README.md; validate_args asserts
    // --use-precision-aware-optimizer with --optimizer-cpu-offload.
    args.push_back({"--optimizer-cpu-offload", ""});
    args.push_back({"--optimizer-offload-fraction", "1.0"});
    args.push_back({"--use-precision-aware-optimizer", ""});
    args.push_back({"--overlap-cpu-optimizer-d2h-h2d", ""});
  }
  if (plan.zero >= 2) {
    args.push_back({"--use-megatron-fsdp", ""});
    args.push_back({"--use-distributed-optimizer", ""});
    args.push_back({"--data-parallel-sharding-strategy",
                    plan.zero == 2 ? "optim_grads" : "optim_grads_params"});
    args.push_back({"--no-gradient-accumulation-fusion", ""});
    args.push_back({"--ckpt-format", "fsdp_dtensor"});
    notes.push_back(
        "Megatron-FSDP: unset CUDA_DEVICE_MAX_CONNECTIONS (its user guide recommends it; it may "
        "slow TP)");
  }
}

// The framework profile's mechanisms as flags (megatron-core: what p3d
// predicts with; megatron-lm: the same flags at their Megatron-LM defaults,
// which leave the overlaps off). Megatron's DDP bucket default is
// max(40e6, 1e6 x DP) parameters (distributed_data_parallel_config.py); any
// other bucket is written. The attention backend and dropout are written so
// Transformer Engine cannot pick a different core than the prediction assumed.
void AddMechanisms(const PlanRequest& request, const Plan& plan, Args& args) {
  const Framework& fw = request.training.framework;
  args.push_back({"--attention-backend", AttentionImplName(plan.attention)});
  const char* dropout = request.training.dropout ? "0.1" : "0.0";
  args.push_back({"--attention-dropout", dropout});
  args.push_back({"--hidden-dropout", dropout});
  // Gradients reduce over the data-parallel group with context parallel (DP x CP).
  const int dp_cp = plan.grad_group();
  if (dp_cp > 1 && fw.grad_reduce_overlap) {
    args.push_back({"--overlap-grad-reduce", ""});
    if (fw.grad_bucket_elements != 40e6 || fw.grad_bucket_elements_per_dp != 1e6)
      args.push_back({"--ddp-bucket-size", fmt::format("{:.0f}", fw.GradBucketElements(dp_cp))});
  }
  if (dp_cp > 1 && plan.zero == 1 && fw.param_gather_overlap) args.push_back({"--overlap-param-gather", ""});
  if (plan.tp > 1 && plan.sequence_parallel && fw.tp_overlap == TpOverlap::kUserBuffers)
    args.push_back({"--tp-comm-overlap", ""});
  // TrainingSpec::ep_a2a_overlap, where Megatron-Core runs it (EpOverlapRuns).
  if (EpOverlapRuns(request.training, plan))
    args.push_back({"--overlap-moe-expert-parallel-comm", ""});
}

void AddBatchAndPrecision(const PlanRequest& request, const Plan& plan, Args& args) {
  args.push_back({"--micro-batch-size", std::to_string(plan.micro_batch)});
  args.push_back({"--global-batch-size", std::to_string(plan.global_batch())});
  args.push_back({"--seq-length", std::to_string(request.training.seq)});
  const Precision& p = request.training.precision;
  if (p.param_bytes == 2) args.push_back({"--bf16", ""});
  if (p.grad_bytes == 2) args.push_back({"--grad-reduce-in-bf16", ""});
  // FP8 (megatron/training/arguments.py _add_transformer_engine_args): the
  // hybrid format (E4M3 forward, E5M2 gradients; TE's default Format.HYBRID)
  // and the recipe under its own name (p3d's names are Megatron's).
  if (request.training.fp8 != Fp8Recipe::kOff) {
    args.push_back({"--fp8-format", "hybrid"});
    args.push_back({"--fp8-recipe", Fp8RecipeName(request.training.fp8)});
  }
  args.push_back({"--clip-grad", "1.0"});
}

void AddModelShape(const PlanRequest& request, Args& args) {
  const ModelSpec& m = request.model;
  args.push_back({"--num-layers", std::to_string(m.layers)});
  args.push_back({"--hidden-size", std::to_string(m.hidden)});
  args.push_back({"--ffn-hidden-size", std::to_string(m.ffn)});
  args.push_back({"--num-attention-heads", std::to_string(m.heads)});
  if (m.head_dim_override > 0) args.push_back({"--kv-channels", std::to_string(m.head_dim_override)});
  if (m.qk_norm) args.push_back({"--qk-layernorm", ""});
  if (m.mla()) {
    args.push_back({"--multi-latent-attention", ""});
    if (m.q_lora_rank > 0) args.push_back({"--q-lora-rank", std::to_string(m.q_lora_rank)});
    args.push_back({"--kv-lora-rank", std::to_string(m.kv_lora_rank)});
    args.push_back({"--qk-head-dim", std::to_string(m.qk_nope_head_dim)});
    args.push_back({"--qk-pos-emb-head-dim", std::to_string(m.qk_rope_head_dim)});
    args.push_back({"--v-head-dim", std::to_string(m.v_head_dim)});
  }
  if (m.kv_heads != m.heads && !m.mla()) {
    args.push_back({"--group-query-attention", ""});
    args.push_back({"--num-query-groups", std::to_string(m.kv_heads)});
  }
  // Rotary models have no position table: the value only has to cover seq.
  const int64_t positions =
      m.learned_positions() ? m.max_positions : std::max(m.max_positions, request.training.seq);
  args.push_back({"--max-position-embeddings", std::to_string(positions)});
  if (m.arch == Arch::kLlama) {
    args.push_back({"--swiglu", ""});
    args.push_back({"--normalization", "RMSNorm"});
    args.push_back({"--position-embedding-type", "rope"});
    args.push_back({"--disable-bias-linear", ""});
    if (m.qkv_bias) args.push_back({"--add-qkv-bias", ""});
  } else {
    args.push_back({"--normalization", "LayerNorm"});
    args.push_back({"--position-embedding-type", "learned_absolute"});
  }
  if (!m.tie_embeddings) args.push_back({"--untie-embeddings-and-output-weights", ""});
  if (m.moe()) {
    args.push_back({"--num-experts", std::to_string(m.experts)});
    args.push_back({"--moe-router-topk", std::to_string(m.experts_per_token)});
    args.push_back({"--moe-ffn-hidden-size", std::to_string(m.expert_ffn())});
    // The dispatcher p3d prices (simulator time model): all-to-all
    // ("ep.all_to_all") or DeepEP through the flex dispatcher
    // ("ep.deepep", TrainingSpec::ep_deepep).
    if (request.training.ep_deepep) {
      args.push_back({"--moe-token-dispatcher-type", "flex"});
      args.push_back({"--moe-enable-deepep", ""});
    } else {
      args.push_back({"--moe-token-dispatcher-type", "alltoall"});
    }
    if (m.shared_experts > 0)
      args.push_back({"--moe-shared-expert-intermediate-size", std::to_string(m.shared_experts * m.expert_ffn())});
    // Leading dense layers: a per-layer pattern (1 = MoE).
    if (m.dense_layers > 0)
      args.push_back({"--moe-layer-freq", fmt::format("([0]*{}+[1]*{})", m.dense_layers, m.layers - m.dense_layers)});
    if (m.router_bias) args.push_back({"--moe-router-enable-expert-bias", ""});
  }
  // Megatron pads the vocabulary to a multiple of this times TP.
  args.push_back({"--vocab-size", std::to_string(m.vocab)});
  args.push_back({"--make-vocab-size-divisible-by", "128"});
}

}  // namespace

StatusOr<ExportedFile> ExportMegatronArgs(const PlanRequest& request,
                                          const EvaluatedPlan& evaluated) {
  const Plan& plan = evaluated.plan;
  P3D_RETURN_IF_ERROR(CheckExportable(request, plan));
  P3D_RETURN_IF_ERROR(CheckExportFramework("megatron", request.framework.framework.name));
  P3D_RETURN_IF_ERROR(CheckMegatronLimits(request, plan));
  ExportedFile out;
  Args args;
  AddParallelism(plan, request.model, args, out.notes);
  AddMechanisms(request, plan, args);
  AddBatchAndPrecision(request, plan, args);
  AddModelShape(request, args);
  const int64_t multiple = 128 * plan.tp;
  const int64_t padded = (request.model.vocab + multiple - 1) / multiple * multiple;
  if (padded != request.model.vocab) {
    out.notes.push_back(fmt::format(
        "vocab: Megatron pads {} to {} (a multiple of 128 x TP); p3d's memory and time figures "
        "count {}",
        request.model.vocab, padded, request.model.vocab));
  }
  out.notes.push_back(
      "--vocab-size is read by --tokenizer-type NullTokenizer (mock data); with a real tokenizer "
      "add its --tokenizer-type/--tokenizer-model and data flags");
  for (size_t i = 0; i < args.size(); ++i) {
    out.text += args[i].first;
    if (!args[i].second.empty()) out.text += " " + args[i].second;
    out.text += i + 1 < args.size() ? " \\\n" : "\n";
  }
  return out;
}

}  // namespace p3d
