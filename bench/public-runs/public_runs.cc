// p3d-public-runs: predicts every published training run of runs.json that
// p3d's plan space can express, with the layout the source states and the
// framework profile of the row's framework, and tabulates predicted vs
// published step time, fit and peak memory (issue 15's table).
//
//   p3d-public-runs --runs bench/public-runs/runs.json --out bench/results/public-runs.md
//   p3d-public-runs --runs ... --check bench/results/public-runs.md   (exit 1 if any row moved)
//   p3d-public-runs --runs ... --set fit     (only the fit rows: what tuning may look at)
//
// What is fixed from the source: model shape (ALiBi and an embedding LayerNorm
// from attention_variant), GPU, GPU count, TP, CP (1 when not stated), PP, VPP, the first/last stage's
// layers where stated (else the search's split), DP,
// micro-batch, global batch, sequence length, and where stated recompute,
// sequence parallel and the sharding (distributed optimizer = ZeRO-1, FSDP or
// ZeRO-3 = ZeRO-3; over every DP x CP rank unless the source says hybrid). What the source leaves open is searched, within what the
// framework runs, and the best fitting plan reported. Rows p3d cannot express
// yet are listed with the reason.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>

#include "common/input_file.h"
#include "common/json_fields.h"
#include "common/tool_main.h"
#include "common/units.h"
#include "models/zoo.h"
#include "planner/search.h"
#include "simulator/framework_profile.h"

namespace p3d {
namespace {

using nlohmann::json;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
bool Has(const json& r, const char* k) { return r.contains(k) && !r[k].is_null(); }
std::string Str(const json& r, const char* k) { return Has(r, k) && r[k].is_string() ? r[k].get<std::string>() : ""; }
int64_t Int(const json& r, const char* k, int64_t fallback) {
  return Has(r, k) && r[k].is_number() ? static_cast<int64_t>(r[k].get<double>()) : fallback;
}

// The catalog GPU of a row, or "" when the card is not in the catalog.
std::string CatalogGpu(const std::string& gpu) {
  static const std::map<std::string, std::string> names = {{"h100-sxm", "h100-sxm"},   {"a100-80", "a100-80gb"},
                                                           {"a100-40", "a100-40gb"},   {"v100-32", "v100-32gb"},
                                                           {"b200", "b200"},           {"h200", "h200"},
                                                           {"gb200", "gb200"}};
  auto it = names.find(gpu);
  return it == names.end() ? "" : it->second;
}

// The framework profile a row is predicted with (simulator/frameworks/): its
// framework column, refined by the version the row names where one column
// covers stacks with different mechanisms: Megatron-LM before Megatron-Core
// by year (the 2022 release added sequence parallelism, selective recompute
// and the async TP all-reduce); PyTorch FSDP rows run by Composer
// (llm-foundry), NeMo AutoModel's MoE models (nemo-automodel: its
// components/moe/parallelizer.py path) or else by PyTorch's FSDP2 (torchtitan's
// profile; AutoModel's dense path, components/distributed/parallelizer.py, is
// "taken and modified from torchtitan"). "" for stacks without a profile.
std::string ProfileOf(const json& r) {
  const std::string framework = Str(r, "framework"), version = Str(r, "framework_version");
  if (framework == "megatron-lm")
    return version.find("2022") != std::string::npos ? "megatron-lm-2022" : "megatron-lm-2021";
  if (framework == "fsdp") {
    if (version.find("Composer") != std::string::npos) return "llm-foundry";
    const bool automodel_moe =
        version.find("AutoModel") != std::string::npos && Int(r, "num_experts", 1) > 1;
    return automodel_moe ? "nemo-automodel" : "torchtitan";
  }
  if (framework == "other") return "";
  return framework;
}

// The FP8 recipe a row's precision names (common/fp8.h): MXFP8; current
// scaling (Megatron-Bridge's FP8-CS, torchao's dynamic per-tensor float8) =
// tensorwise; blockwise; any other FP8 run (NeMo 24.07 "scaling recipe not
// stated", Composer's amp_fp8) = delayed, the default of Megatron's
// --fp8-recipe and the recipe Composer's amp_fp8 builds (DelayedScaling).
Fp8Recipe Fp8RecipeOf(const std::string& precision) {
  auto has = [&](const char* s) { return precision.find(s) != std::string::npos; };
  if (!has("fp8") && !has("float8")) return Fp8Recipe::kOff;
  if (has("mxfp8")) return Fp8Recipe::kMxfp8;
  if (has("current scaling") || has("fp8-cs") || has("torchao")) return Fp8Recipe::kTensorwise;
  if (has("blockwise")) return Fp8Recipe::kBlockwise;
  return Fp8Recipe::kDelayed;
}

struct Row {
  json src;
  std::string why_not;  // non-empty: p3d cannot express this run yet
  PlanRequest request;
  SearchConstraints fixed;
  double published_step_s = 0;
};

// The zoo model whose source is the row's HF config ("deepseek-ai/DeepSeek-V3
// config.json ..."): MoE and MLA shapes have more fields than a row lists.
const ModelSpec* ZooModelFor(const std::string& hf_config) {
  if (hf_config.empty()) return nullptr;
  for (const ZooEntry& e : Zoo())
    if (e.source.rfind(hf_config + " ", 0) == 0) return &e.model;
  return nullptr;
}

Row Build(const json& r) {
  Row row{r, "", {}, {}, 0};
  auto no = [&](std::string why) {
    row.why_not = std::move(why);
    return row;
  };
  const std::string precision = Lower(Str(r, "precision"));
  const Fp8Recipe fp8 = Fp8RecipeOf(precision);
  const bool moe = Int(r, "ep", 1) > 1 || Int(r, "num_experts", 1) > 1 ||
                   Lower(Str(r, "attention_variant")).find("mla") != std::string::npos;
  const ModelSpec* zoo = moe ? ZooModelFor(Str(r, "hf_config")) : nullptr;
  if (moe && zoo == nullptr)
    return no(fmt::format("MoE/MLA model '{}' not in the zoo", Str(r, "hf_config")));
  const std::string gpu = CatalogGpu(Str(r, "gpu"));
  if (gpu.empty()) return no(fmt::format("card '{}' not in the catalog", Str(r, "gpu")));
  if (!Has(r, "step_time_s")) return no("no step time published or derivable");
  for (const char* k : {"layers", "hidden", "heads", "ffn_hidden", "vocab", "seq_len", "num_gpus", "global_batch"})
    if (!Has(r, k) && !(zoo != nullptr && std::string_view(k) == "ffn_hidden"))  // an all-MoE zoo model
      return no(fmt::format("'{}' not published", k));
  const int64_t pp = Int(r, "pp", 1);
  const std::string profile_name = ProfileOf(r);
  if (profile_name.empty()) return no(fmt::format("no framework profile for '{}'", Str(r, "framework")));
  StatusOr<FrameworkProfile> profile = LoadFrameworkProfile(profile_name);
  if (!profile.ok()) return no(profile.status().message());

  ModelSpec& m = row.request.model;
  const std::string name = Lower(Str(r, "model_name"));
  bool llama = false;
  for (const char* family : {"llama", "mistral", "qwen"}) llama |= name.find(family) != std::string::npos;
  m.name = Str(r, "id");
  m.arch = llama ? Arch::kLlama : Arch::kGpt2;
  m.layers = Int(r, "layers", 0);
  m.hidden = Int(r, "hidden", 0);
  m.heads = Int(r, "heads", 0);
  m.kv_heads = Int(r, "kv_heads", m.heads);
  m.ffn = Int(r, "ffn_hidden", 0);
  m.vocab = Int(r, "vocab", 0);
  m.max_positions = Int(r, "seq_len", 0);
  m.tie_embeddings = !llama;
  const std::string variant = Lower(Str(r, "attention_variant"));
  m.alibi = variant.find("alibi") != std::string::npos;
  m.embedding_norm = variant.find("embedding layernorm") != std::string::npos;
  if (zoo != nullptr) {
    // The zoo's exact shape; the row's listed fields must agree with it.
    m = *zoo;
    m.name = Str(r, "id");
    if (m.layers != Int(r, "layers", 0) || m.hidden != Int(r, "hidden", 0) || m.heads != Int(r, "heads", 0) ||
        m.experts != Int(r, "num_experts", m.experts))
      return no(fmt::format("row shape differs from the zoo's {}", zoo->name));
  }
  if (Status s = Validate(m); !s.ok()) return no("model: " + s.message());
  StatusOr<ClusterSpec> c = CatalogCluster(gpu);
  row.request.cluster = *c;
  row.request.cluster.num_gpus = static_cast<int>(Int(r, "num_gpus", 0));
  if (Has(r, "gpus_per_node"))
    if (Status s = SetGpusPerNode(&row.request.cluster, static_cast<int>(Int(r, "gpus_per_node", 8))); !s.ok())
      return no(s.message());
  SetFramework(*profile, &row.request);
  row.request.training.fp8 = fp8;
  std::string fp8_refusal;
  if (Fp8RuleBroken(row.request.training.framework, RuleKind::kLimit, fp8, &fp8_refusal)) return no(fp8_refusal);
  // A PyTorch FSDP run in "PURE" mixed precision reduces its gradients in bf16
  // (Composer's MixedPrecision; the row's precision says which it ran).
  if (Str(r, "precision").find("PURE") != std::string::npos)
    row.request.training.framework.sharded_grad_reduce_bytes = 2;
  // Megatron-Core's EP all-to-all overlap, where the row's source or its
  // recipe turns it on (field ep_a2a_overlap; TrainingSpec::ep_a2a_overlap).
  if (Has(r, "ep_a2a_overlap")) {
    if (!r["ep_a2a_overlap"].is_boolean()) return no("'ep_a2a_overlap' must be true or false");
    row.request.training.ep_a2a_overlap = r["ep_a2a_overlap"].get<bool>();
  }
  // DeepEP token dispatch, where the row's source or its recipe uses it
  // (field ep_deepep; TrainingSpec::ep_deepep).
  if (Has(r, "ep_deepep")) {
    if (!r["ep_deepep"].is_boolean()) return no("'ep_deepep' must be true or false");
    row.request.training.ep_deepep = r["ep_deepep"].get<bool>();
  }
  row.request.training.global_batch = Int(r, "global_batch", 0);
  row.request.training.seq = Int(r, "seq_len", 0);

  SearchConstraints& f = row.fixed;
  // The sources ran Megatron's default rank order (none states
  // --use-tp-pp-dp-mapping): the placement is fixed, not searched.
  f.placement = Placement::kDpBeforePp;
  f.tp = static_cast<int>(Int(r, "tp", 1));
  f.cp = static_cast<int>(Int(r, "cp", 1));  // not stated: none
  f.pp = static_cast<int>(pp);
  f.vpp = static_cast<int>(Int(r, "vpp", 1));
  if (Has(r, "first_stage_layers")) f.first_stage_layers = static_cast<int>(Int(r, "first_stage_layers", 0));
  if (Has(r, "last_stage_layers")) f.last_stage_layers = static_cast<int>(Int(r, "last_stage_layers", 0));
  // Megatron-Core's embedding/loss split accounting, as the row's recipe sets it.
  for (auto [key, fixed] :
       {std::pair{"account_for_embedding_in_pipeline_split", &f.account_for_embedding},
        std::pair{"account_for_loss_in_pipeline_split", &f.account_for_loss}})
    if (Has(r, key) && r[key].is_boolean()) *fixed = r[key].get<bool>();
  // An interleaved split must be one the row states (accounted: legal by
  // PipelineSplitRule) or one the search finds (whole VPP-multiples per stage).
  Plan split;
  split.pp = *f.pp;
  split.vpp = *f.vpp;
  split.account_for_embedding = f.account_for_embedding.value_or(false);
  split.account_for_loss = f.account_for_loss.value_or(false);
  std::string split_why;
  if (split.accounts_edges()) {
    if (const char* rule = PipelineSplitRule(split, m.layers, &split_why))
      return no(fmt::format("pipeline split: {} (rule {})", split_why, rule));
  } else if (split.vpp > 1 && m.layers % split.vpp != 0) {
    return no(fmt::format("{} layers do not split into VPP={} chunks per stage, and the row states no "
                          "first/last stage layers or embedding/loss accounting",
                          m.layers, split.vpp));
  }
  if (Has(r, "dp")) f.dp = static_cast<int>(Int(r, "dp", 1));
  if (Has(r, "micro_batch")) f.micro_batch = Int(r, "micro_batch", 1);
  const std::string rc = Lower(Str(r, "recompute"));
  if (rc.starts_with("full")) f.recompute = Recompute::kFull;
  else if (rc.starts_with("selective")) f.recompute = Recompute::kSelective;
  else if (rc.starts_with("none")) f.recompute = Recompute::kNone;
  if (Has(r, "sequence_parallel") && r["sequence_parallel"].is_boolean()) f.sequence_parallel = r["sequence_parallel"].get<bool>();
  if (*f.tp == 1) f.sequence_parallel = false;
  const std::string sh = Lower(Str(r, "sharding"));
  // "Megatron distributed optimizer (DDP path; table FSDP=0)" is ZeRO-1: the
  // distributed optimizer is read before the word FSDP; "FSDP=0" (a table's
  // FSDP column) says the run did not use it.
  const bool fsdp = sh.find("fsdp") != std::string::npos && sh.find("fsdp=0") == std::string::npos;
  if (sh.find("distributed optimizer") != std::string::npos || sh.find("zero stage 1") != std::string::npos)
    f.zero = 1;
  else if (fsdp || sh.find("zero stage 3") != std::string::npos || sh.find("zero-3") != std::string::npos)
    f.zero = 3;
  else if (sh.starts_with("none")) f.zero = 0;
  // Hybrid sharding only where the source says so; else ZeRO shards over all DP x CP ranks.
  if (sh.find("hybrid") == std::string::npos && sh.find("hsdp") == std::string::npos) f.zero_shard = 0;
  f.offload = Offload::kNone;
  // Expert parallelism and the experts' TP as the row ran them (null: EP 1, expert TP = TP).
  f.ep = static_cast<int>(Int(r, "ep", 1));
  if (Has(r, "etp") && Int(r, "etp", 0) != *f.tp) f.etp = static_cast<int>(Int(r, "etp", 0));
  row.published_step_s = r["step_time_s"].get<double>();
  return row;
}

struct Result {
  std::string line;
  bool predicted = false, fits = false;
  double error = 0;
  double memory_error = 0;  // predicted / published peak memory - 1
  bool has_memory = false;
};

Result Predict(const Row& row) {
  const json& r = row.src;
  const std::string head =
      fmt::format("| {} | {} | {} | {} | {} | {} x {} | TP{} {}PP{} DP{} |", Str(r, "id"), Str(r, "set"),
                  Str(r, "framework"), row.why_not.empty() ? row.request.framework.framework.name : "-",
                  Str(r, "model_name"), Int(r, "num_gpus", 0), Str(r, "gpu"), Int(r, "tp", 1),
                  Int(r, "cp", 1) > 1 ? fmt::format("CP{} ", Int(r, "cp", 1)) : "", Int(r, "pp", 1),
                  Has(r, "dp") ? std::to_string(Int(r, "dp", 0)) : "?");
  if (!row.why_not.empty()) return {head + fmt::format(" - | - | - | - | - | not expressible: {} |", row.why_not)};
  SearchOptions o;
  o.fixed = row.fixed;
  o.top_k = 1;
  StatusOr<SearchResult> s = SearchPlans(row.request, o);
  if (!s.ok())
    return {head + fmt::format(" {:.3f} | - | - | NO | - | refused: {} |", row.published_step_s, s.status().message()),
            true, false, 0};
  const EvaluatedPlan& e = s->plans.at(0);
  const double peak_gib = ToGiB(e.memory.peak().total());
  Result res{"", true, e.fits, 0, 0, Has(r, "peak_memory_gib")};
  std::string memory = fmt::format("{:.1f}", peak_gib);
  if (res.has_memory) {
    const double published = r["peak_memory_gib"].get<double>();
    res.memory_error = peak_gib / published - 1;
    memory = fmt::format("{:.1f} vs {:.1f} ({:+.1f}%)", peak_gib, published, 100 * res.memory_error);
  }
  const Fp8Recipe recipe = row.request.training.fp8;
  const std::string fp8 = recipe == Fp8Recipe::kOff ? "" : std::string(" fp8=") + Fp8RecipeName(recipe);
  if (!e.fits) {
    res.line = head + fmt::format(" {:.3f} | - | - | NO | {} | {}{} |", row.published_step_s, memory,
                                  PlanSummary(e.plan), fp8);
    return res;
  }
  res.error = e.time.step_s / row.published_step_s - 1;
  res.line = head + fmt::format(" {:.3f} | {:.3f} | {:+.1f}% | yes | {} | {}{} |", row.published_step_s, e.time.step_s,
                                100 * res.error, memory, PlanSummary(e.plan), fp8);
  return res;
}

// Error statistics over the rows of `set` for which `in_group` holds.
struct Stats {
  int rows = 0, expressible = 0, fits = 0, memories = 0;
  double mean = 0, max = 0, memory_mean = 0, memory_max = 0;
};
template <typename Group>
Stats StatsOf(const std::string& set, const std::vector<Result>& results, const std::vector<Row>& rows,
              Group in_group) {
  Stats st;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (Str(rows[i].src, "set") != set || !in_group(rows[i].src)) continue;
    ++st.rows;
    const Result& r = results[i];
    if (!r.predicted) continue;
    ++st.expressible;
    if (r.has_memory) {
      ++st.memories;
      st.memory_mean += std::fabs(r.memory_error);
      st.memory_max = std::max(st.memory_max, std::fabs(r.memory_error));
    }
    if (!r.fits) continue;
    ++st.fits;
    st.mean += std::fabs(r.error);
    st.max = std::max(st.max, std::fabs(r.error));
  }
  if (st.fits) st.mean /= st.fits;
  if (st.memories) st.memory_mean /= st.memories;
  return st;
}

std::string Pct(int count, double value) { return count ? fmt::format("{:.1f}%", 100 * value) : std::string("-"); }

std::string Summary(const std::string& label, const std::string& set, const Stats& st) {
  return fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", label, set, st.rows, st.expressible,
                     st.fits, st.expressible - st.fits, Pct(st.fits, st.mean), Pct(st.fits, st.max), st.memories,
                     st.memories ? Pct(st.memories, st.memory_mean) + " / " + Pct(st.memories, st.memory_max)
                                 : std::string("-"));
}

// The table's footer: how far catalog-only predictions are from the runs,
// and the catalog's efficiencies against published measurements of each card.
std::string CatalogFooter(const std::vector<std::string>& sets, const std::vector<Result>& results,
                          const std::vector<Row>& rows) {
  std::string measured;
  for (const std::string& set : sets) {
    const Stats st = StatsOf(set, results, rows, [](const json&) { return true; });
    measured += fmt::format("{}\n{} rows: step time mean |error| {}, max {} over {} predicted runs",
                            measured.empty() ? "" : ";", set, Pct(st.fits, st.mean), Pct(st.fits, st.max), st.fits);
  }
  return "\n**How far catalog-only predictions are from measured runs.** With no calibration (catalog GPU\n"
         "figures, the framework profiles):" + measured + "; per card in the `gpu` rows above. The\n"
         "catalog's efficiencies against published measurements of each card (docs/hardware.md): the GEMM\n"
         "plateau vs the maximum achievable bf16 matmul FLOPS of stas00/ml-engineering\n"
         "(compute/accelerator/README.md, MAMF, best shape found): A100 SXM 0.80 vs 0.869 (271.2 of 312),\n"
         "H100 SXM and H200 0.80 vs 0.803 (794.5 of 989), B200 0.75 vs 0.776 (1745 of 2250), MI300X 0.55 vs\n"
         "0.514-0.601; V100, L40S and the RTX cards have no published MAMF. MAMF is the best shape found, an\n"
         "upper bound of a model's GEMMs; raising the A100 plateau toward it would make the A100 rows, already\n"
         "predicted fast, faster still, so it stays 0.80. HBM efficiency 0.80 for every card; p3d-calibrate\n"
         "measured 0.90-0.91 on H100 and H200 (bench/results/profile-*.json). Interference of collectives with the compute under them\n"
         "(overlap_slowdown 0.36 GEMM / 0.44 memory-bound per second of collective) is the 2 x H200\n"
         "measurement (bench/results/profile-h200x2.json), applied to the Hopper cards; 0 (not modelled)\n"
         "on the others.\n";
}

std::string Table(const json& doc, const std::string& only_set) {
  std::vector<Row> rows;
  for (const json& r : doc["rows"]) rows.push_back(Build(r));
  std::vector<Result> results;
  for (const Row& row : rows) results.push_back(Predict(row));
  std::vector<std::string> sets = {"fit", "held"};
  if (!only_set.empty()) sets = {only_set};
  std::string out =
      "# Published training runs vs p3d's catalog prediction\n\n"
      "Generated by `build/bin/p3d-public-runs --runs bench/public-runs/runs.json --out bench/results/public-runs.md`\n"
      "(pinned by the `public_runs_pinned` test: a change that moves a row fails it until this file is\n"
      "regenerated). Sources, definitions and the held-aside rule: bench/public-runs/SOURCES.md. Every\n"
      "p3d figure is a **prediction** from the catalog GPU (no calibration) and the framework profile of the\n"
      "row's framework (`profile` column; simulator/frameworks/, docs/frameworks.md): Megatron-LM before\n"
      "Megatron-Core by version year, PyTorch FSDP rows run by Composer with llm-foundry's, MoE rows of NeMo\n"
      "AutoModel with nemo-automodel's, others with torchtitan's; published figures are the sources' measurements. Fixed from the source: shape, GPU and\n"
      "count, TP, PP, VPP, uneven stages where stated, DP, micro-batch, global batch, sequence length, and\n"
      "where stated recompute, sequence parallel and sharding (distributed optimizer = ZeRO-1, FSDP or\n"
      "ZeRO-3 = ZeRO-3), for MoE rows EP and expert TP with the zoo model of the row's HF config\n"
      "(routing assumed balanced), and the FP8 recipe (`fp8=` in the plan column: current scaling and torchao\n"
      "float8 = tensorwise, MXFP8 = mxfp8, any other FP8 run = delayed, Megatron's default); the rest is searched\n"
      "within what the framework runs and the best fitting plan\n"
      "shown. Error = predicted / published step time - 1; memory: predicted peak vs published peak, GiB,\n"
      "where the source publishes one. The profiles and catalog changes were tuned on the fit rows only (`--set fit`); the held rows'\n"
      "errors under the earlier, profile-less model were visible in the previous version of this file\n"
      "(SOURCES.md, held-aside rule).\n\n"
      "| group | set | rows | expressible | predicted to fit | predicted NOT to fit (they ran) | mean abs error | "
      "max abs error | rows with memory | memory mean / max abs error |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  auto all = [](const json&) { return true; };
  for (const std::string& set : sets) out += Summary("all", set, StatsOf(set, results, rows, all));
  for (const std::string& set : sets) {
    std::map<std::string, int> sources, gpus;
    for (const Row& row : rows) ++sources[Str(row.src, "source")], ++gpus[Str(row.src, "gpu")];
    for (const auto& [source, count] : sources)
      out += Summary(source, set,
                     StatsOf(set, results, rows, [&](const json& r) { return Str(r, "source") == source; }));
    for (const auto& [gpu, count] : gpus)
      out += Summary("gpu " + gpu, set, StatsOf(set, results, rows, [&](const json& r) { return Str(r, "gpu") == gpu; }));
  }
  out += CatalogFooter(sets, results, rows);
  out += "\n| id | set | framework | profile | model | GPUs | layout | published step s | predicted step s | error | "
         "fits | peak GiB (vs published) | p3d plan or reason |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows.size(); ++i)
    if (only_set.empty() || Str(rows[i].src, "set") == only_set) out += results[i].line + "\n";
  return out;
}

int Main(int argc, char** argv) {
  std::string runs, out, check, only_set;
  CLI::App app{"p3d-public-runs: p3d's predictions of published training runs"};
  app.add_option("--runs", runs, "runs.json")->required();
  app.add_option("--out", out, "write the Markdown table here");
  app.add_option("--check", check, "compare with this table; exit 1 if any line differs");
  app.add_option("--set", only_set, "only the rows of this set (fit | held): tuning looks at fit rows only")
      ->check(CLI::IsMember({"fit", "held"}));
  if (int code = ParseFlags(app, argc, argv); code >= 0) return code;
  StatusOr<json> doc = ReadJsonFile(runs, "runs file");
  if (!doc.ok() || !doc->contains("rows")) {
    std::cerr << "p3d-public-runs: " << (doc.ok() ? "no 'rows'" : doc.status().ToString()) << "\n";
    return kExitBadInput;
  }
  const std::string table = Table(*doc, only_set);
  if (!out.empty()) {
    if (Status s = WriteFileAtomic(out, table, "--out"); !s.ok()) {
      std::cerr << "p3d-public-runs: " << s.ToString() << "\n";
      return kExitBadInput;
    }
  }
  if (!check.empty()) {
    StatusOr<std::string> pinned = ReadInputFile(check, "pinned table");
    if (!pinned.ok() || *pinned != table) {
      std::cerr << "p3d-public-runs: the predictions differ from " << check
                << " (regenerate it with --out and explain the change in the commit)\n";
      return 1;
    }
  }
  if (out.empty() && check.empty()) std::cout << table;
  return 0;
}

}  // namespace
}  // namespace p3d

int main(int argc, char** argv) {
  return p3d::GuardedMain("p3d-public-runs", p3d::kExitBadInput, [&] { return p3d::Main(argc, argv); });
}
