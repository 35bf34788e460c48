// Round trip: the Megatron-LM argument text is split back into flag/value
// pairs and every value is checked against the plan and the model; plans
// Megatron rejects at start-up are refused.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "models/zoo.h"
#include "planner/export.h"
#include "tests/planner/export_test_plans.h"

namespace p3d {
namespace {

using testing::Evaluated;
using testing::ExportCase;
using testing::ExpectRefused;
using testing::MakePlan;

// Megatron-LM flags state the megatron-core profile's mechanisms.
PlanRequest RequestFor(const ModelSpec& model, const Plan& plan, int64_t seq = 2048) {
  return testing::RequestFor(model, plan, seq, 8, "megatron-core");
}

Plan WithEp(Plan p, int ep) {
  p.ep = ep;
  return p;
}

Plan WithEtp(Plan p, int etp) {
  p.etp = etp;
  return p;
}

Plan WithStages(Plan p, int first, int last) {
  p.first_stage_layers = first;
  p.last_stage_layers = last;
  return p;
}

Plan WithAccounting(Plan p, bool embedding, bool loss) {
  p.account_for_embedding = embedding;
  p.account_for_loss = loss;
  return p;
}

// "--flag value \\\n--switch \\\n..." -> {flag: value, switch: ""}. Fails the
// test on a repeated flag or a stray value.
std::map<std::string, std::string> ParseArgs(const std::string& text) {
  std::istringstream in(text);
  std::map<std::string, std::string> args;
  std::string token, last;
  while (in >> token) {
    if (token == "\\") continue;
    if (token.rfind("--", 0) == 0) {
      EXPECT_EQ(args.count(token), 0u) << "repeated " << token;
      args[token] = "";
      last = token;
    } else {
      EXPECT_FALSE(last.empty()) << "value without flag: " << token;
      EXPECT_EQ(args[last], "") << "two values for " << last;
      args[last] = token;
    }
  }
  return args;
}

int64_t Int(const std::map<std::string, std::string>& a, const std::string& flag) {
  auto it = a.find(flag);
  EXPECT_NE(it, a.end()) << flag;
  return it == a.end() ? -1 : std::stoll(it->second);
}

class MegatronRoundTrip : public ::testing::TestWithParam<ExportCase> {};

TEST_P(MegatronRoundTrip, EveryValueMatchesThePlan) {
  const ExportCase& c = GetParam();
  const Plan& p = c.plan;
  const ModelSpec& m = c.model;
  PlanRequest request = RequestFor(m, p, c.seq);
  auto exported = ExportMegatronArgs(request, Evaluated(p));
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  auto a = ParseArgs(exported->text);
  std::map<std::string, std::string> expected_switches;  // flag -> "" for every switch we expect

  // Parallel layout and the batch identity as Megatron derives it.
  EXPECT_EQ(Int(a, "--tensor-model-parallel-size"), p.tp);
  EXPECT_EQ(Int(a, "--pipeline-model-parallel-size"), p.pp);
  const int64_t dp = request.cluster.num_gpus / (p.tp * p.pp);
  EXPECT_EQ(dp, p.dp);
  EXPECT_EQ(Int(a, "--micro-batch-size"), p.micro_batch);
  EXPECT_EQ(Int(a, "--global-batch-size"), request.training.global_batch);
  EXPECT_EQ(Int(a, "--global-batch-size") % (Int(a, "--micro-batch-size") * dp), 0);
  EXPECT_EQ(Int(a, "--global-batch-size") / (Int(a, "--micro-batch-size") * dp), p.grad_accum);
  const bool split_flags = p.uneven_stages() || p.accounts_edges();
  if (p.vpp > 1 && !split_flags) {
    EXPECT_EQ(Int(a, "--num-layers-per-virtual-pipeline-stage") * p.pp * p.vpp, m.layers);
  } else {
    EXPECT_EQ(a.count("--num-layers-per-virtual-pipeline-stage"), 0u);
  }
  // Uneven or accounted splits need --num-virtual-stages-per-pipeline-rank (validate_args).
  if (p.vpp > 1 && split_flags) {
    EXPECT_EQ(Int(a, "--num-virtual-stages-per-pipeline-rank"), p.vpp);
  } else {
    EXPECT_EQ(a.count("--num-virtual-stages-per-pipeline-rank"), 0u);
  }
  // With --account-for-embedding/loss-in-pipeline-split, every chunk's layers
  // as Megatron-Core builds them (get_num_layers_to_build): (L + E + Lo) /
  // (PP x VPP), one fewer on the first virtual stage (E) and the last (Lo).
  const bool emb_set = a.count("--account-for-embedding-in-pipeline-split") > 0;
  const bool loss_set = a.count("--account-for-loss-in-pipeline-split") > 0;
  EXPECT_EQ(emb_set, p.account_for_embedding);
  EXPECT_EQ(loss_set, p.account_for_loss);
  if (emb_set) expected_switches["--account-for-embedding-in-pipeline-split"];
  if (loss_set) expected_switches["--account-for-loss-in-pipeline-split"];
  if (emb_set || loss_set) {
    const int64_t chunks = p.pp * p.vpp, units = m.layers + emb_set + loss_set;
    ASSERT_EQ(units % chunks, 0);
    int64_t total = 0;
    for (int v = 0; v < chunks; ++v) {
      const int64_t built = units / chunks - (emb_set && v == 0) - (loss_set && v == chunks - 1);
      EXPECT_EQ(built, ChunkLayers(p, m.layers, v)) << "virtual stage " << v;
      total += built;
    }
    EXPECT_EQ(total, m.layers);
  }
  // Every stage's layers as Megatron-Core builds them from the flags
  // (get_num_layers_to_build): a given first/last count on its stage, the
  // rest shared by the other stages; each a whole number of VPP chunks.
  const bool first_set = a.count("--decoder-first-pipeline-num-layers") > 0;
  const bool last_set = a.count("--decoder-last-pipeline-num-layers") > 0;
  const int64_t first = first_set ? Int(a, "--decoder-first-pipeline-num-layers") : 0;
  const int64_t last = last_set ? Int(a, "--decoder-last-pipeline-num-layers") : 0;
  const int64_t middle_stages = p.pp - first_set - last_set;
  ASSERT_GT(middle_stages, 0);
  if (!(emb_set || loss_set)) ASSERT_EQ((m.layers - first - last) % middle_stages, 0);
  const int64_t middle = (m.layers - first - last) / middle_stages;
  for (int r = 0; r < p.pp && !(emb_set || loss_set); ++r) {
    const int64_t built = r == 0 && first_set ? first : r == p.pp - 1 && last_set ? last : middle;
    EXPECT_EQ(built, StageLayers(p, m.layers, r)) << "stage " << r;
    EXPECT_EQ(built % p.vpp, 0) << "stage " << r;
  }
  if (p.sequence_parallel && p.tp > 1) expected_switches["--sequence-parallel"];
  switch (p.recompute) {
    case Recompute::kNone:
      EXPECT_EQ(a.count("--recompute-granularity"), 0u);
      break;
    case Recompute::kSelective:
      EXPECT_EQ(a["--recompute-granularity"], "selective");
      EXPECT_EQ(a.count("--recompute-method"), 0u);  // Megatron asserts none for selective
      break;
    case Recompute::kFull:
      EXPECT_EQ(a["--recompute-granularity"], "full");
      EXPECT_EQ(a["--recompute-method"], "uniform");
      EXPECT_EQ(Int(a, "--recompute-num-layers"), 1);
      break;
  }
  if (p.zero >= 1) expected_switches["--use-distributed-optimizer"];
  if (p.zero >= 2) {
    expected_switches["--use-megatron-fsdp"];
    expected_switches["--no-gradient-accumulation-fusion"];
    EXPECT_EQ(a["--data-parallel-sharding-strategy"],
              p.zero == 2 ? "optim_grads" : "optim_grads_params");
    EXPECT_EQ(a["--ckpt-format"], "fsdp_dtensor");
  } else {
    EXPECT_EQ(a.count("--data-parallel-sharding-strategy"), 0u);
  }

  // The megatron-core profile's mechanisms (what the prediction assumed), read
  // back from the flags: attention core, dropout, the DP and TP overlaps at
  // Megatron's default bucket size.
  const Framework& fw = request.training.framework;
  EXPECT_EQ(a["--attention-backend"], AttentionImplName(p.attention));
  EXPECT_EQ(a["--attention-dropout"], "0.0");
  EXPECT_EQ(a["--hidden-dropout"], "0.0");
  const bool grad_overlap = a.count("--overlap-grad-reduce") == 1;
  EXPECT_EQ(grad_overlap, fw.grad_reduce_overlap && p.dp > 1);
  if (grad_overlap) expected_switches["--overlap-grad-reduce"];
  EXPECT_EQ(a.count("--ddp-bucket-size"), 0u);  // max(40e6, 1e6 x DP): Megatron's own default
  EXPECT_EQ(fw.GradBucketElements(p.dp), std::max(40e6, 1e6 * p.dp));
  const bool param_overlap = a.count("--overlap-param-gather") == 1;
  EXPECT_EQ(param_overlap, fw.param_gather_overlap && p.zero == 1 && p.dp > 1);
  if (param_overlap) expected_switches["--overlap-param-gather"];
  const bool tp_overlap = a.count("--tp-comm-overlap") == 1;
  EXPECT_EQ(tp_overlap, fw.tp_overlap == TpOverlap::kUserBuffers && p.tp > 1 && p.sequence_parallel);
  if (tp_overlap) expected_switches["--tp-comm-overlap"];

  // Training recipe.
  EXPECT_EQ(Int(a, "--seq-length"), c.seq);
  expected_switches["--bf16"];
  EXPECT_EQ(a["--clip-grad"], "1.0");

  // Model shape.
  EXPECT_EQ(Int(a, "--num-layers"), m.layers);
  EXPECT_EQ(Int(a, "--hidden-size"), m.hidden);
  EXPECT_EQ(Int(a, "--ffn-hidden-size"), m.ffn);
  EXPECT_EQ(Int(a, "--num-attention-heads"), m.heads);
  if (m.kv_heads != m.heads) {
    expected_switches["--group-query-attention"];
    EXPECT_EQ(Int(a, "--num-query-groups"), m.kv_heads);
  } else {
    EXPECT_EQ(a.count("--num-query-groups"), 0u);
  }
  EXPECT_GE(Int(a, "--max-position-embeddings"), c.seq);
  if (m.arch == Arch::kGpt2) {
    EXPECT_EQ(Int(a, "--max-position-embeddings"), m.max_positions);
  }
  if (m.arch == Arch::kLlama) {
    expected_switches["--swiglu"];
    expected_switches["--disable-bias-linear"];
    EXPECT_EQ(a["--normalization"], "RMSNorm");
    EXPECT_EQ(a["--position-embedding-type"], "rope");
  } else {
    EXPECT_EQ(a["--normalization"], "LayerNorm");
    EXPECT_EQ(a["--position-embedding-type"], "learned_absolute");
  }
  if (!m.tie_embeddings) expected_switches["--untie-embeddings-and-output-weights"];
  EXPECT_EQ(Int(a, "--vocab-size"), m.vocab);
  EXPECT_EQ(Int(a, "--make-vocab-size-divisible-by"), 128);

  // MoE: the model's experts and the plan's expert layout, and the
  // expert-data-parallel size Megatron-Core derives from them
  // (parallel_state.py: DP*TP / (EP*ETP) ranks, without CP).
  if (m.moe()) {
    EXPECT_EQ(Int(a, "--num-experts"), m.experts);
    EXPECT_EQ(Int(a, "--moe-router-topk"), m.experts_per_token);
    EXPECT_EQ(Int(a, "--moe-ffn-hidden-size"), m.expert_ffn());
    EXPECT_EQ(a["--moe-token-dispatcher-type"], "alltoall");
    EXPECT_EQ(Int(a, "--expert-model-parallel-size"), p.ep);
    EXPECT_EQ(Int(a, "--expert-tensor-parallel-size"), p.expert_tp());
    EXPECT_EQ(dp * p.tp / (Int(a, "--expert-model-parallel-size") * Int(a, "--expert-tensor-parallel-size")),
              p.expert_dp());
    if (m.shared_experts > 0) {
      EXPECT_EQ(Int(a, "--moe-shared-expert-intermediate-size"), m.shared_experts * m.expert_ffn());
    }
    if (m.dense_layers > 0) {
      EXPECT_EQ(a["--moe-layer-freq"], fmt::format("([0]*{}+[1]*{})", m.dense_layers, m.layers - m.dense_layers));
    }
    if (m.router_bias) expected_switches["--moe-router-enable-expert-bias"];
  } else {
    EXPECT_EQ(a.count("--num-experts"), 0u);
    EXPECT_EQ(a.count("--expert-model-parallel-size"), 0u);
  }
  if (m.qk_norm) expected_switches["--qk-layernorm"];
  if (m.head_dim_override > 0) {
    EXPECT_EQ(Int(a, "--kv-channels"), m.head_dim_override);
  }
  if (m.mla()) {
    expected_switches["--multi-latent-attention"];
    EXPECT_EQ(Int(a, "--q-lora-rank"), m.q_lora_rank);
    EXPECT_EQ(Int(a, "--kv-lora-rank"), m.kv_lora_rank);
    EXPECT_EQ(Int(a, "--qk-head-dim"), m.qk_nope_head_dim);
    EXPECT_EQ(Int(a, "--qk-pos-emb-head-dim"), m.qk_rope_head_dim);
    EXPECT_EQ(Int(a, "--v-head-dim"), m.v_head_dim);
  }

  // Switches: exactly the expected ones, and nothing unexpected.
  for (const auto& [flag, value] : a) {
    if (!value.empty()) continue;
    EXPECT_EQ(expected_switches.count(flag), 1u) << "unexpected switch " << flag;
  }
  for (const auto& [flag, unused] : expected_switches) {
    ASSERT_EQ(a.count(flag), 1u) << "missing " << flag;
    EXPECT_EQ(a[flag], "") << flag << " is a switch";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Plans, MegatronRoundTrip,
    ::testing::Values(
        ExportCase{"gpt2_dp8", testing::Gpt2Small(), MakePlan(8, 1, 1, 1, 0, 4, 16), 1024},
        ExportCase{"qwen3_moe_ep8", *ZooModel("qwen3-30b-a3b"), WithEp(MakePlan(8, 1, 1, 1, 1, 1, 64), 8), 4096},
        ExportCase{"qwen3_moe_tp2_ep2", *ZooModel("qwen3-30b-a3b"),
                   WithEp(MakePlan(4, 2, 1, 1, 1, 1, 128, Recompute::kNone, true), 2), 4096},
        ExportCase{"qwen3_moe_tp2_ep8_etp1", *ZooModel("qwen3-30b-a3b"),
                   WithEtp(WithEp(MakePlan(4, 2, 1, 1, 1, 1, 128, Recompute::kNone, true), 8), 1), 4096},
        ExportCase{"deepseek_v3_ep4_pp2", *ZooModel("deepseek-v3"),
                   WithStages(WithEp(MakePlan(4, 1, 2, 1, 1, 1, 128), 4), 30, 0), 4096},
        ExportCase{"gpt2_tp2_pp2_zero1_full", testing::Gpt2Small(),
                   MakePlan(2, 2, 2, 1, 1, 8, 4, Recompute::kFull, true), 512},
        ExportCase{"llama7b_dp16_zero2", testing::Llama2_7B(), MakePlan(16, 1, 1, 1, 2, 2, 16)},
        ExportCase{"llama7b_tp4_dp8_zero3_sel", testing::Llama2_7B(),
                   MakePlan(8, 4, 1, 1, 3, 1, 64, Recompute::kSelective, true)},
        ExportCase{"llama70b_tp8_pp4_vpp5_zero1_sp", testing::Llama2_70B(),
                   MakePlan(2, 8, 4, 5, 1, 1, 256, Recompute::kSelective, true)},
        ExportCase{"llama70b_tp8_pp2_full", testing::Llama2_70B(),
                   MakePlan(4, 8, 2, 1, 0, 1, 128, Recompute::kFull, false), 8192},
        // Uneven stages: 405B's 126 layers as 7 | 8 x 14 | 7, as 6 | 8 x 15 with
        // VPP 2, and GPT-2's 12 as 2 x 4 | 4 and (PP 2) 5 | 7.
        ExportCase{"llama405b_tp8_pp16_first7_last7", ZooModel("llama-3.1-405b").value(),
                   WithStages(MakePlan(8, 8, 16, 1, 1, 1, 64, Recompute::kFull, true), 7, 7)},
        ExportCase{"llama405b_tp8_pp16_vpp2_first6", ZooModel("llama-3.1-405b").value(),
                   WithStages(MakePlan(8, 8, 16, 2, 1, 1, 64, Recompute::kSelective, true), 6, 0)},
        ExportCase{"gpt2_pp5_last4", testing::Gpt2Small(), WithStages(MakePlan(1, 1, 5, 1, 0, 1, 8), 0, 4), 1024},
        ExportCase{"gpt2_pp2_first5", testing::Gpt2Small(), WithStages(MakePlan(4, 1, 2, 1, 1, 2, 8), 5, 0),
                   1024},
        // The embedding and loss counted as layers: 405B's 126 + 2 over PP 8 x
        // VPP 8 (Megatron-Bridge's recipe), and GPT-2's 12 + 1 (embedding) over PP 13.
        ExportCase{"llama405b_tp8_pp8_vpp8_accounted", ZooModel("llama-3.1-405b").value(),
                   WithAccounting(MakePlan(2, 8, 8, 8, 1, 1, 64, Recompute::kSelective, true), true,
                                  true)},
        ExportCase{"gpt2_pp13_embedding_accounted", testing::Gpt2Small(),
                   WithAccounting(MakePlan(1, 1, 13, 1, 0, 1, 13), true, false), 1024}),
    [](const ::testing::TestParamInfo<ExportCase>& info) { return info.param.name; });

Status ExportStatus(const ModelSpec& model, const Plan& plan, int64_t seq = 2048) {
  auto r = ExportMegatronArgs(RequestFor(model, plan, seq), Evaluated(plan));
  return r.ok() ? Status::Ok() : r.status();
}

TEST(MegatronExport, RefusesSplitsMegatronRejects) {
  // 80 layers over PP=3.
  ExpectRefused(ExportStatus(testing::Llama2_70B(), MakePlan(2, 8, 3, 1, 1, 1, 64)),
                "num_layers % pipeline");
  // 80 layers, PP=4 x VPP=3: 20 per stage is not a multiple of 80/12.
  ExpectRefused(ExportStatus(testing::Llama2_70B(), MakePlan(2, 8, 4, 3, 1, 1, 64)), "PP*VPP");
  // Uneven stages Megatron-Core's TransformerConfig rejects: 111 layers over
  // 14 middle stages; odd counts with VPP 2; both counts at PP 2.
  const ModelSpec l405 = ZooModel("llama-3.1-405b").value();
  ExpectRefused(ExportStatus(l405, WithStages(MakePlan(8, 8, 16, 1, 1, 1, 64), 7, 8)), "rule middle%stages");
  ExpectRefused(ExportStatus(l405, WithStages(MakePlan(8, 8, 16, 2, 1, 1, 64), 7, 7)), "rule uneven%vpp");
  ExpectRefused(ExportStatus(testing::Gpt2Small(), WithStages(MakePlan(4, 1, 2, 1, 1, 2, 8), 5, 7), 1024),
                "rule first+last=>pp>=3");
  // 126 + embedding + loss = 128 over PP 8 x VPP 3.
  ExpectRefused(ExportStatus(l405, WithAccounting(MakePlan(2, 8, 8, 3, 1, 1, 64), true, true)),
                "rule (layers+edges)%(pp*vpp)");
  // ALiBi and the embedding LayerNorm (BLOOM) have no Megatron-LM flag.
  ExpectRefused(ExportStatus(ZooModel("bloom-176b").value(), MakePlan(8, 4, 1, 1, 1, 1, 8)), "ALiBi");
  // Interleaving without a pipeline.
  ExpectRefused(ExportStatus(testing::Gpt2Small(), MakePlan(8, 1, 1, 2, 0, 1, 8), 1024),
                "needs PP>1");
  // 8 KV heads over TP=16.
  ExpectRefused(ExportStatus(testing::Llama2_70B(), MakePlan(1, 16, 4, 1, 1, 1, 64)),
                "--num-query-groups 8");
  // 12 heads over TP=8.
  ExpectRefused(ExportStatus(testing::Gpt2Small(), MakePlan(1, 8, 1, 1, 0, 1, 8), 1024),
                "12 attention heads");
  // ZeRO-3 with a pipeline: the profile's rule, with its source.
  ExpectRefused(ExportStatus(testing::Llama2_70B(), MakePlan(4, 8, 2, 1, 3, 1, 64)),
                "rule pp=>zero<=1");
  ExpectRefused(ExportStatus(testing::Llama2_70B(), MakePlan(4, 8, 2, 1, 3, 1, 64)),
                "Megatron-FSDP");
  // GPT-2 learned positions shorter than seq.
  ExpectRefused(ExportStatus(testing::Gpt2Small(), MakePlan(8, 1, 1, 1, 0, 1, 8), 2048),
                "max_position_embeddings");
}

TEST(MegatronExport, NotesVocabPaddingOnlyWhenMegatronPads) {
  // GPT-2: 50257 is not a multiple of 128 -> padded to 50304.
  Plan plan = MakePlan(8, 1, 1, 1, 0, 1, 8);
  auto gpt2 = ExportMegatronArgs(RequestFor(testing::Gpt2Small(), plan, 1024), Evaluated(plan));
  ASSERT_TRUE(gpt2.ok());
  auto has = [](const ExportedFile& f, const std::string& s) {
    return std::any_of(f.notes.begin(), f.notes.end(),
                       [&](const std::string& n) { return n.find(s) != std::string::npos; });
  };
  EXPECT_TRUE(has(*gpt2, "pads 50257 to 50304"));
  // Llama: 32000 = 250 x 128 is not padded at TP=1.
  auto llama = ExportMegatronArgs(RequestFor(testing::Llama2_7B(), plan), Evaluated(plan));
  ASSERT_TRUE(llama.ok());
  EXPECT_FALSE(has(*llama, "pads"));
}

TEST(MegatronExport, Bf16GradientReductionFollowsThePrecision) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan);
  request.training.precision.grad_bytes = 2;
  auto r = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ParseArgs(r->text).count("--grad-reduce-in-bf16"), 1u);
}

// The tp-pp-dp placement is Megatron's --use-tp-pp-dp-mapping (megatron/training/initialize.py).
TEST(MegatronExport, PlacementWritesTheMappingFlag) {
  Plan plan = MakePlan(2, 1, 4, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan);
  auto plain = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(ParseArgs(plain->text).count("--use-tp-pp-dp-mapping"), 0u);
  plan.placement = Placement::kPpBeforeDp;
  auto mapped = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  EXPECT_EQ(ParseArgs(mapped->text).count("--use-tp-pp-dp-mapping"), 1u);
}

TEST(MegatronExport, EpAllToAllOverlapWritesMegatronsFlagWhereItRuns) {
  // TrainingSpec::ep_a2a_overlap: written where Megatron-Core runs it
  // (EpOverlapRuns: EP > 1, no full recompute, VPP > 1 when PP > 1).
  const ModelSpec qwen = *ZooModel("qwen3-30b-a3b");
  auto count = [&](const Plan& plan, bool overlap) {
    PlanRequest request = RequestFor(qwen, plan, 4096);
    request.training.ep_a2a_overlap = overlap;
    auto out = ExportMegatronArgs(request, Evaluated(plan));
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? ParseArgs(out->text).count("--overlap-moe-expert-parallel-comm") : 99u;
  };
  const Plan ep8 = WithEp(MakePlan(8, 1, 1, 1, 1, 1, 64), 8);
  EXPECT_EQ(count(ep8, false), 0u);
  EXPECT_EQ(count(ep8, true), 1u);
  EXPECT_EQ(count(MakePlan(8, 1, 1, 1, 1, 1, 64), true), 0u);  // EP 1
  EXPECT_EQ(count(WithEp(MakePlan(8, 1, 1, 1, 1, 1, 64, Recompute::kFull), 8), true), 0u);
  // PP > 1 needs interleaving.
  EXPECT_EQ(count(WithEp(MakePlan(8, 1, 2, 1, 1, 1, 64), 8), true), 0u);
  EXPECT_EQ(count(WithEp(MakePlan(8, 1, 2, 2, 1, 1, 64), 8), true), 1u);
}

TEST(MegatronExport, DeepEpWritesTheFlexDispatcher) {
  // TrainingSpec::ep_deepep: Megatron-Core's flex dispatcher with DeepEP,
  // else the all-to-all dispatcher.
  const ModelSpec qwen = *ZooModel("qwen3-30b-a3b");
  const Plan ep8 = WithEp(MakePlan(8, 1, 1, 1, 1, 1, 64), 8);
  for (bool deepep : {false, true}) {
    PlanRequest request = RequestFor(qwen, ep8, 4096);
    request.training.ep_deepep = deepep;
    auto out = ExportMegatronArgs(request, Evaluated(ep8));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    auto a = ParseArgs(out->text);
    EXPECT_EQ(a["--moe-token-dispatcher-type"], deepep ? "flex" : "alltoall");
    EXPECT_EQ(a.count("--moe-enable-deepep"), deepep ? 1u : 0u);
  }
}

TEST(MegatronExport, RefusesOptimizerStatePrecisionItDoesNotWrite) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan);
  request.training.precision.optimizer_bytes = 4;
  auto r = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("optimizer_bytes=4"), std::string::npos);
}

// Megatron Core optimizer CPU offload (megatron/core/optimizer/cpu_offloading/
// README.md; validate_args asserts --use-precision-aware-optimizer with it):
// the distributed optimizer's shards only, no parameter offload.
TEST(MegatronExport, OptimizerOffloadWritesMegatronCoreFlagsOnZero1Only) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  plan.offload = Offload::kOptimizer;
  auto r = ExportMegatronArgs(RequestFor(testing::Llama2_7B(), plan), Evaluated(plan));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto a = ParseArgs(r->text);
  for (const char* flag : {"--use-distributed-optimizer", "--optimizer-cpu-offload",
                           "--use-precision-aware-optimizer", "--overlap-cpu-optimizer-d2h-h2d"})
    EXPECT_EQ(a.count(flag), 1u) << flag;
  EXPECT_EQ(a["--optimizer-offload-fraction"], "1.0");

  plan.zero = 2;
  auto zero2 = ExportMegatronArgs(RequestFor(testing::Llama2_7B(), plan), Evaluated(plan));
  ASSERT_FALSE(zero2.ok());
  EXPECT_EQ(zero2.status().code(), Status::Code::kInfeasible);
  EXPECT_NE(zero2.status().message().find("--optimizer-cpu-offload"), std::string::npos);

  plan.zero = 3;
  plan.offload = Offload::kOptimizerAndParams;
  auto params = ExportMegatronArgs(RequestFor(testing::Llama2_7B(), plan), Evaluated(plan));
  ASSERT_FALSE(params.ok());
  EXPECT_NE(params.status().message().find("rule offload-params"), std::string::npos);
  EXPECT_NE(params.status().message().find("parameter offload"), std::string::npos);

  Plan none = MakePlan(8, 1, 1, 1, 1, 1, 8);
  auto plain = ExportMegatronArgs(RequestFor(testing::Llama2_7B(), none), Evaluated(none));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(ParseArgs(plain->text).count("--optimizer-cpu-offload"), 0u);
}

}  // namespace
}  // namespace p3d

namespace p3d {
namespace {

// An export states the mechanisms of the prediction it is made from: a plan
// predicted with another profile is refused, naming the profile to use.
TEST(MegatronExport, RefusesAPlanPredictedForAnotherFramework) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  for (const char* other : {"p3d", "torchtitan", "deepspeed", "nemo"}) {
    auto r = ExportMegatronArgs(testing::RequestFor(testing::Llama2_7B(), plan, 2048, 8, other), Evaluated(plan));
    ASSERT_FALSE(r.ok()) << other;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("rule export-framework"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("--framework megatron-core"), std::string::npos);
  }
}

// The overlap flags follow the profile, not a constant: a profile without
// overlaps (megatron-core's fields set to Megatron-LM's CLI defaults) writes
// none of them, and a non-default bucket is written.
TEST(MegatronExport, OverlapFlagsFollowTheProfile) {
  Plan plan = MakePlan(4, 2, 1, 1, 1, 1, 16, Recompute::kNone, true);
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan);
  auto on = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  for (const char* flag : {"--overlap-grad-reduce", "--overlap-param-gather", "--tp-comm-overlap"})
    EXPECT_EQ(ParseArgs(on->text).count(flag), 1u) << flag;

  request.training.framework.grad_reduce_overlap = false;
  request.training.framework.param_gather_overlap = false;
  request.training.framework.tp_overlap = TpOverlap::kAsyncGrad;
  auto off = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(off.ok());
  for (const char* flag : {"--overlap-grad-reduce", "--overlap-param-gather", "--tp-comm-overlap"})
    EXPECT_EQ(ParseArgs(off->text).count(flag), 0u) << flag;

  request.training.framework.grad_reduce_overlap = true;
  request.training.framework.grad_bucket_elements = 128e6;
  request.training.framework.grad_bucket_elements_per_dp = 0;
  auto bucket = ExportMegatronArgs(request, Evaluated(plan));
  ASSERT_TRUE(bucket.ok());
  EXPECT_EQ(ParseArgs(bucket->text)["--ddp-bucket-size"], "128000000");
}

}  // namespace
}  // namespace p3d
